// PNG op: row filtering and a fast native encoder (filter + deflate + chunks).
//
// Filtering follows the PNG spec (section 9.2); kFilterAdaptive picks, per row, the type
// whose output has the smallest sum of |byte as int8| (libpng's and Pillow's heuristic).
//
// The encoder (png_encode_cpu) cuts the image into units of whole rows (an eighth of the
// filtered data, kept within [kPngMinUnitBytes, kPngMaxUnitBytes]; the cut depends only
// on the image, never on the thread count, so the bytes are deterministic). Each unit is filtered and deflated on
// its own into its own IDAT chunk: one deflate block (dynamic Huffman, fixed Huffman or
// stored, whichever is smallest), ended on a byte boundary by an empty stored block
// (zlib's Z_SYNC_FLUSH) so that the units concatenate into one zlib stream. The matcher
// is deliberately narrow: runs against a few fixed distances (the byte, the pixel, the
// row above and its two diagonal neighbours), which covers flat areas, repeated rows and
// shifted rows; everything else is Huffman-coded literals. The Adler-32 of the stream is combined from the units' checksums and ends the
// last IDAT chunk.
#pragma once
#include <cstdint>

#include "common.h"

namespace tbfast {

// ---------------------------------------------------------------- filtering -------------

enum PngFilter : int32_t {
  kFilterNone = 0,
  kFilterSub = 1,
  kFilterUp = 2,
  kFilterAverage = 3,
  kFilterPaeth = 4,
  kFilterAdaptive = 5,
};

struct PngFilterParams {
  const uint8_t* in;       // [height, in_row_stride] raw rows
  int64_t height;
  int64_t row_bytes;       // width * bytes per pixel
  int64_t in_row_stride;   // bytes between input rows
  int64_t bpp;             // bytes per pixel (1..4)
  int32_t filter;          // PngFilter
  uint8_t* out;            // [height, row_bytes + 1]: filter byte, then filtered row
  int32_t num_threads;
};

TBF_HD uint8_t paeth_predictor(uint8_t a, uint8_t b, uint8_t c) {
  int32_t p = (int32_t)a + b - c;
  int32_t pa = p > a ? p - a : a - p;
  int32_t pb = p > b ? p - b : b - p;
  int32_t pc = p > c ? p - c : c - p;
  if (pa <= pb && pa <= pc) return a;
  if (pb <= pc) return b;
  return c;
}

int png_filter_cpu(const PngFilterParams& p);

// ---------------------------------------------------------------- encoder ---------------

// Filtered bytes per unit (at least one row): small enough to stay in L2 and to give
// threads several units each, large enough that block headers and the per-unit flush and
// chunk (about 40 bytes) stay small next to a highly compressed unit (about 1/1000).
constexpr int64_t kPngMinUnitBytes = int64_t(1) << 16;
constexpr int64_t kPngMaxUnitBytes = int64_t(1) << 18;
constexpr int64_t kPngUnitsPerImage = 8;

enum PngLevel : int32_t {
  kPngStored = 0,  // stored blocks only (no compression)
  kPngFast = 1,    // Huffman + fixed-distance runs
};

struct PngEncodeParams {
  PngFilterParams filter;  // rows to filter; filter.out is unused (units filter into scratch)
  int32_t level;           // PngLevel
  const uint8_t* head;     // bytes written first (signature, IHDR, ...)
  int64_t head_len;
  const uint8_t* tail;     // bytes written last (IEND)
  int64_t tail_len;
  uint8_t* out;            // [capacity >= png_encode_bound(p)]
  int64_t* out_len;        // written: bytes used in out
};

int64_t png_encode_bound(const PngEncodeParams& p);
int png_encode_cpu(const PngEncodeParams& p);

// ---------------------------------------------------------------- deflate + checksums ---
// (csrc/cpu/deflate_cpu.cpp)

// Raw deflate of data[0, n) as one independent piece that starts and ends on a byte
// boundary: BFINAL is set when `final`, else the piece ends with an empty stored block.
// Matches only reference bytes of the piece, at the distances in dists[0, num_dists)
// (each in 1..32768, at most 8 of them). level: PngLevel. Writes at most deflate_piece_bound(n) bytes.
// scratch: deflate_scratch_bytes(n) bytes, 8-byte aligned (the piece's matches); the
// function allocates nothing, so it runs on worker threads without any failure path.
int64_t deflate_piece(const uint8_t* data, int64_t n, const int32_t* dists, int num_dists, int32_t level, bool final,
                      uint8_t* out, void* scratch);
int64_t deflate_piece_bound(int64_t n);
int64_t deflate_scratch_bytes(int64_t n);

uint32_t adler32_update(uint32_t adler, const uint8_t* data, int64_t n);
uint32_t adler32_combine(uint32_t a1, uint32_t a2, int64_t len2);
uint32_t crc32_update(uint32_t crc, const uint8_t* data, int64_t n);  // PNG/zlib CRC-32

}  // namespace tbfast
