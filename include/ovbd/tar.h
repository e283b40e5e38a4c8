// Tar wrapping of a blob (normative spec: docs/format/tar.md). OverlayBD can wrap any blob in a
// one-member tar so that it is an ordinary OCI tar layer:
//
//   | pax header 'x' (overlaybd.pax) | pax record "NN size=<n>\n" | ustar header (size 0) | payload | pad | 2 zero blocks |
//
// The payload starts at 512, or 1536 when a pax header precedes it; its size comes from the pax
// `size=` record (the ustar size field says 0) or, without pax, from the ustar size field.
#pragma once

#include <memory>
#include <string>

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::tar {

// True if the first 512 bytes are a ustar header ("ustar" magic, version "00") with a valid
// header checksum. A short file is "false".
Result<bool> IsTar(const ReadableFile& file);

// The payload of a one-member tar (first regular member) as a ReadableFile slice.
Result<std::unique_ptr<ReadableFile>> OpenPayload(std::shared_ptr<const ReadableFile> file);

// A WritableFile that wraps what is appended in a tar as overlaybd does (pax size record, ustar
// member `member_name`, mode 0100644, mtime 0, uid/gid 0). Writes a placeholder header first;
// Close() writes the padding and end blocks and rewrites the headers with the real size, so
// `out` must be seekable. `out` is not owned and not closed.
Result<std::unique_ptr<WritableFile>> NewWrappingWriter(WritableFile* out,
                                                        std::string member_name = "overlaybd.commit");

}  // namespace ovbd::tar
