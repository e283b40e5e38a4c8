// LSMT: OverlayBD's layer format (normative spec: docs/format/lsmt.md).
//
//   read-only blob:  | header 4096 | data (sector runs) | index: N x 16 B | trailer 4096 |
//   writable layer:  data file  = | header 4096 | appended data ...            |
//                    index file = | header 4096 | 16-byte records, replayed ... |
//
//   lowers (RO blobs, bottom first) ──┐
//                                     ├─ merged SegmentIndex (upper wins) ─┐
//   upper (RwLayer, optional) ────────┘                                    ├─ Image (ReadableFile,
//                                                                          │   + writes if upper)
//   Commit(image) ─> one RO blob (sequential WritableFile; compose with zfile/tar writers)
//
// Units: Segment fields are 512-byte sectors; every other offset/length in this API is bytes.
// Thread model: Image reads are concurrent; writes to an RwLayer are serialised internally and may
// run concurrently with reads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::lsmt {

inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint64_t kHeaderSize = 4096;           // header and trailer space
inline constexpr uint32_t kMaxSegmentLength = 16383;    // sectors (8 MiB - 512 B)
inline constexpr uint64_t kInvalidOffset = (1ULL << 50) - 1;  // padding entries
inline constexpr uint64_t kMaxOffset = (1ULL << 50) - 1;      // sectors
inline constexpr uint64_t kMaxMOffset = (1ULL << 55) - 1;     // sectors
inline constexpr uint64_t kMaxVirtualSize = kMaxOffset * kSectorSize;  // bytes: the last sector an entry can map
inline constexpr size_t kMaxStackLayers = 255;  // read-only layers; the upper comes on top
inline constexpr uint64_t kMaxRoIndexSize = 1'000'000;        // entries incl. padding
inline constexpr uint64_t kMaxRwIndexRecords = 128'000'000;
inline constexpr uint64_t kMaxMergedIndexSize = 128'000'000;
inline constexpr size_t kMaxUserTag = 256;
inline constexpr uint64_t kMaxIoSize = 4ULL << 20;            // writes are split at 4 MiB

// The one check of the stack cap (docs/format/lsmt.md §5): at most kMaxStackLayers read-only
// layers. A writable upper is not counted: it sits on top of them (as in overlaybd, whose
// lowers take slots 0..254 and the upper slot 255). @return InvalidArgument naming the count
// if there are more. Every way of opening a stack calls it before it opens any layer.
Status CheckLayerCount(size_t lowers);

// One index entry. offset/length/moffset in sectors. zeroed: reads as zeros and hides lower
// layers (moffset meaningless). tag: layer index at run time (0 = top of the stack).
struct Segment {
  uint64_t offset = 0;
  uint32_t length = 0;
  uint64_t moffset = 0;
  bool zeroed = false;
  uint8_t tag = 0;

  uint64_t end() const { return offset + length; }
  bool operator==(const Segment&) const = default;
};

// HeaderTrailer flag bits.
inline constexpr uint32_t kFlagHeader = 1u << 0;
inline constexpr uint32_t kFlagDataFile = 1u << 1;
inline constexpr uint32_t kFlagSealed = 1u << 2;
inline constexpr uint32_t kFlagSparseRw = 1u << 4;

// The decoded fields of a 4096-byte header or trailer.
struct HeaderTrailer {
  uint32_t flags = 0;
  uint64_t index_offset = 0;   // bytes
  uint64_t index_size = 0;     // entries (16 bytes each)
  uint64_t virtual_size = 0;   // bytes
  std::string uuid;            // "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX" uppercase, or "" = null
  std::string parent_uuid;     // same; "" = null
  uint8_t version = 1;
  uint8_t sub_version = 1;
  std::string user_tag;        // commit message, <= 256 bytes
};

// What `ovbd info` / `ovbd check` report about one read-only blob (already unwrapped from
// tar/ZFile). Entries are the valid (non-padding) ones, in file order.
struct LayerInfo {
  HeaderTrailer header;
  HeaderTrailer trailer;
  uint64_t file_size = 0;
  uint64_t padding_entries = 0;
  std::vector<Segment> segments;  // tags reset to 0
};

// Reads and validates a read-only blob's header, trailer and index (docs/format/lsmt.md §6).
// Corruption: the bytes break the format (magic, flag bits 0..2, index range, alignment and cap,
// entry shape, order, moffset range). NotSupported: flag bits above 5, version other than 1, a
// virtual_size that is not a multiple of 512 up to kMaxVirtualSize. Never an error: unparsable
// uuids (read as ""), flag bits 3..5, on-disk tags. Errors name the file, the field or entry, and
// the cause.
Result<LayerInfo> ReadLayerInfo(const ReadableFile& blob);
// True if the file starts with the LSMT magic and a header flag (an RO blob or an RW data
// file). Only the first 390 bytes are read; a damaged blob still answers true.
Result<bool> IsLsmtBlob(const ReadableFile& file);

// ---- Writable layer ---------------------------------------------------------------------------

struct CreateOptions {
  uint64_t virtual_size = 0;       // bytes, multiple of 512, > 0
  std::string uuid;                // "" = random v4
  std::string parent_uuid;         // "" = null
};

// The writable (upper) layer: a data file that only grows, and an index file of 16-byte
// records replayed in order on open (last write wins). Write/Discard are 512-byte aligned and
// must lie within VirtualSize() (if it is 0: within the format's 2^59-byte limit); writes are
// split into 4 MiB records, discards into 16383-sector zeroed records. Read needs no alignment.
// Durability: Sync() makes every completed write survive a crash; it syncs the data file before
// the index file, so a durable record never points at lost data. A torn trailing record in the
// index file is ignored on reopen, never misread; a record pointing past the data file's end
// makes OpenRwLayer fail with Corruption. OpenRwLayer refuses a sparse layer (flag bit 4) and the
// header values ReadLayerInfo refuses with NotSupported; a sealed data file is InvalidArgument.
// Threads: writers are serialised by one mutex; readers share a lock on the in-memory index only,
// so reads run concurrently with each other and with a writer's file I/O.
class RwLayer {
 public:
  virtual ~RwLayer() = default;
  virtual Status Write(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Hides [offset, offset+length) as zeros (discard and write-zeroes; no data is stored).
  virtual Status Discard(uint64_t offset, uint64_t length) = 0;
  // Reads only this layer's mappings; unmapped ranges read as zeros.
  virtual Status Read(uint64_t offset, std::span<uint8_t> buf) const = 0;
  virtual Status Sync() = 0;
  // Appends the sorted index (rounded up to 512 bytes with padding entries, index_size = real
  // count) and a trailer to the data file, making it a valid read-only blob, then syncs the data
  // file. Writes, discards and a second Seal fail with InvalidArgument afterwards; reads work.
  virtual Status Seal() = 0;
  // The live mappings, sorted by offset (tags 0).
  virtual std::vector<Segment> Segments() const = 0;
  // The live mappings overlapping [offset, offset+length) SECTORS, clipped to that range (a data
  // mapping cut at its front has its moffset advanced), sorted, tags 0. The default filters
  // Segments(); the real layer answers from its index in O(log n + k).
  virtual std::vector<Segment> Lookup(uint64_t offset, uint64_t length) const;
  // The data-file header (virtual size, uuids). Resize changes it: callers that read it do not
  // run concurrently with Resize.
  virtual const HeaderTrailer& meta() const = 0;
  virtual uint64_t VirtualSize() const = 0;
  // Sets the virtual size (bytes, a positive multiple of 512 below 2^59) in both headers,
  // durably: the data file's first, then the index file's, which is what a reopen reads (a
  // crash between the two leaves the old size). InvalidArgument on a sealed layer or a bad
  // size; whether data lies past a smaller size is the caller's question.
  virtual Status Resize(uint64_t virtual_size) = 0;
  // Reads raw bytes of the data file (for commit).
  virtual const ReadableFile& data_file() const = 0;
};

Result<std::unique_ptr<RwLayer>> CreateRwLayer(std::unique_ptr<RandomRWFile> data,
                                               std::unique_ptr<RandomRWFile> index,
                                               const CreateOptions& options);
Result<std::unique_ptr<RwLayer>> OpenRwLayer(std::unique_ptr<RandomRWFile> data,
                                             std::unique_ptr<RandomRWFile> index);
// Whether `data` was sealed from the layer whose index file is `index`: it ends with a valid
// index and trailer, and that index equals the records replayed from `index`, so reading it as
// a read-only blob serves exactly what the writable layer held. False when a seal never
// finished, and when the data merely ends with bytes that look like a trailer (written data
// cannot forge the index file). Errors: the files are not a writable layer's.
Result<bool> IsSealedFrom(const ReadableFile& data, const ReadableFile& index);

// ---- Merged index -----------------------------------------------------------------------------

// An immutable sorted, non-overlapping set of segments with fast point/range lookup. Memory is
// about 16 bytes per segment plus a search tree and a direct lookup table (17-18 B in all).
class SegmentIndex {
 public:
  virtual ~SegmentIndex() = default;
  // Calls fn for every segment overlapping [offset, offset+length) sectors, in order, clipped
  // to the range (a data segment clipped at its front has its moffset advanced).
  virtual void Lookup(uint64_t offset, uint64_t length,
                      const std::function<void(const Segment&)>& fn) const = 0;
  // Appends to *out what Lookup(offset, length, ...) would pass to fn (the fast path of the
  // image read path: no callback per segment). Existing elements of *out are kept.
  virtual void AppendOverlapping(uint64_t offset, uint64_t length,
                                 std::vector<Segment>* out) const;
  // The first segment whose end is > offset, or nullopt (the basic lookup, benchmarked).
  virtual std::optional<Segment> FindFirstEndingAfter(uint64_t offset) const = 0;
  virtual size_t size() const = 0;
  virtual std::vector<Segment> All() const = 0;
  virtual size_t MemoryBytes() const = 0;
};
// `segments` must be sorted and non-overlapping (checked: InvalidArgument otherwise).
Result<std::unique_ptr<SegmentIndex>> BuildSegmentIndex(std::vector<Segment> segments);

// Merges per-layer indexes (index 0 = TOP layer) into one: upper wins, zeroed entries shadow.
// The result's tags are layer indexes (0 = top). Fails above kMaxMergedIndexSize.
Result<std::vector<Segment>> MergeIndexes(const std::vector<std::vector<Segment>>& top_first);
// BuildSegmentIndex(MergeIndexes(top_first)) in one step, without the intermediate vector
// (what OpenImage does). Same errors.
Result<std::unique_ptr<SegmentIndex>> BuildMergedIndex(
    const std::vector<std::vector<Segment>>& top_first);

// ---- Image: a stack of layers --------------------------------------------------------------

// A block-device image: read-only lowers (bottom first) with an optional writable upper layer.
// As a ReadableFile it reads the merged virtual device (holes and zeroed ranges read as zeros);
// ReadAt needs no alignment; Size() is the virtual size of the top-most layer that has one
// (upper first) and reads past it are OutOfRange. A data mapping reaching past the end of its
// blob reads zeros there. Tags: 0 = the upper if present, then the lowers top-down. Header
// metas are the layers' HEADERS (a committed blob's header and trailer carry the same fields; a
// sealed file's header is its RW data header). Thread-safe.
class Image : public ReadableFile {
 public:
  virtual bool writable() const = 0;
  // Writes/discards go to the upper layer (NotSupported if there is none). Byte offsets; the
  // writable layer needs 512-byte alignment.
  virtual Status Write(uint64_t offset, std::span<const uint8_t> data) = 0;
  virtual Status Discard(uint64_t offset, uint64_t length) = 0;
  virtual Status Flush() = 0;
  // Syncs and seals the upper layer in place (RwLayer::Seal: its data file becomes a read-only
  // layer); reads go on, writes fail with InvalidArgument from then on. NotSupported without an
  // upper. An online snapshot calls it with writes paused and stacks the sealed data file as the
  // newest lower of the next image, under a fresh upper (docs/lifecycle.md).
  virtual Status SealUpper() = 0;
  // Number of layers, including the upper.
  virtual size_t layer_count() const = 0;
  // The merged mappings of the whole stack (tags: 0 = top), for commit, merge and extents.
  virtual std::vector<Segment> Segments() const = 0;
  // The merged mappings that overlap sectors [offset, offset+length), clipped to that range,
  // sorted, with the same tags (block status, extents). Gaps are unmapped (read as zeros).
  virtual std::vector<Segment> SegmentsIn(uint64_t offset, uint64_t length) const = 0;
  // Reads `buf.size()` bytes of layer `tag`'s raw blob at byte `offset` (for commit).
  virtual Status ReadLayerData(uint8_t tag, uint64_t offset, std::span<uint8_t> buf) const = 0;
  // Header fields of the bottom and top layer (commit takes uuids/size from them).
  virtual const HeaderTrailer& top_meta() const = 0;
  virtual const HeaderTrailer& bottom_meta() const = 0;

  // ---- online changes (docs/lifecycle.md): images derived from this one share its layers ----
  // The writable layer (shared with images derived from this one), or null.
  virtual std::shared_ptr<RwLayer> upper() const = 0;
  // This image's layers under `upper`, a fresh writable layer, in O(1) (nothing is read or
  // merged): this image's upper, if any, stays as a frozen layer read from its live index, and
  // is no longer written through the new image. The caller stops writing to this image first
  // (an online snapshot, with writes paused), then seals the frozen layer and later replaces
  // the result by a rebuilt stack (OpenStack) that reads it as a lower. InvalidArgument if the
  // frozen layer would exceed CheckLayerCount.
  virtual Result<std::unique_ptr<Image>> StackedUnder(std::shared_ptr<RwLayer> upper) const = 0;
  // The same layers with the virtual size read again from them (after RwLayer::Resize).
  virtual std::unique_ptr<Image> Reopened() const = 0;
};

// `lowers` are read-only LSMT blobs, bottom first (already unwrapped from tar/ZFile), at most 255
// of them (CheckLayerCount), plus the optional writable upper on top: 255 lowers and an upper is
// the largest stack. With no lowers and no upper: InvalidArgument.
// Each lower is validated by ReadLayerInfo; errors say "lower layer <i>: <file>: ...".
Result<std::unique_ptr<Image>> OpenImage(std::vector<std::shared_ptr<const ReadableFile>> lowers,
                                         std::unique_ptr<RwLayer> upper = nullptr);

// A lower layer for OpenStack: an LSMT blob, or (raw = true) plain content such as a decompressed
// disk image, served as if one data mapping covered it (virtual size = its size rounded up to 512)
// so it can sit under other layers or a writable upper (dm-zfile's "ZFile as a device").
struct LowerLayer {
  std::shared_ptr<const ReadableFile> file;
  bool raw = false;
};
// OpenImage with raw lowers allowed; same limits and errors.
Result<std::unique_ptr<Image>> OpenStack(std::vector<LowerLayer> lowers, std::unique_ptr<RwLayer> upper = nullptr);
// The same with an upper shared with another image (an online merge or replace stacks new
// lowers under the upper that the running image keeps writing).
Result<std::unique_ptr<Image>> OpenStack(std::vector<LowerLayer> lowers, std::shared_ptr<RwLayer> upper);

// ---- Commit / merge / import ----------------------------------------------------------------

struct CommitOptions {
  std::string user_tag;                    // -m, <= 256 bytes
  std::optional<std::string> uuid;         // default: null uuid
  std::optional<std::string> parent_uuid;  // default: from the bottom layer's header
  ProgressFn progress;                     // (bytes of data copied, bytes to copy)
};

// Writes the image's live content as one committed read-only blob to `out` (sequentially):
// header, data in logical order, index merged and padded to 4 KiB, trailer. Zeroed ranges are
// kept (they hide lower layers). Committing an image of several layers is a merge (flatten); the
// on-disk tags then name the source layer (0 = top), as overlaybd-merge writes them. Virtual size
// from top_meta() (or Size() if 0); parent from bottom_meta() unless given. The output equals
// overlaybd-commit's byte for byte. NoSpace if the index would exceed kMaxRoIndexSize entries.
// Does not Close `out`.
Status Commit(const Image& image, WritableFile* out, const CommitOptions& options);

// Writes a committed blob from a raw disk image: every 4 KiB block that is all zeros becomes a
// hole, the rest data. Virtual size = raw size rounded up to 512.
Status ImportRaw(const ReadableFile& raw, WritableFile* out, const CommitOptions& options);

// Parses/formats UUID strings ("" for the null UUID). Accepts any case, writes uppercase.
Result<std::string> NormalizeUuid(std::string_view text);
std::string NewRandomUuid();

}  // namespace ovbd::lsmt
