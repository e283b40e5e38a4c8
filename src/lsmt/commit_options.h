// Turning CommitOptions into the header fields of a committed blob (shared by Commit and
// ImportRaw).
#pragma once

#include <string>

#include "ovbd/lsmt.h"

namespace ovbd::lsmt {

// uuid = options.uuid or null; parent = options.parent_uuid or `default_parent`; user_tag checked
// against 256 bytes. InvalidArgument names the bad option.
Result<HeaderTrailer> CommitMeta(const CommitOptions& options, uint64_t virtual_size,
                                 const std::string& default_parent);

}  // namespace ovbd::lsmt
