// Default implementations of the BlockDevice contract (include/ovbd/block_device.h).
#include "ovbd/block_device.h"

namespace ovbd {

// Devices whose maps are small take the whole map and keep its head; ImageDevice overrides this
// to stop walking once it has enough runs.
Result<std::vector<Extent>> BlockDevice::FirstExtents(uint64_t offset, uint64_t length, size_t max_extents) {
  OVBD_ASSIGN_OR_RETURN(std::vector<Extent> all, Extents(offset, length));
  if (max_extents > 0 && all.size() > max_extents) all.resize(max_extents);
  return all;
}

}  // namespace ovbd
