// Fast raw deflate for PNG scanlines, and the Adler-32 / CRC-32 checksums (csrc/png.h).
//
// One piece is one deflate block, built in four passes over data that fits in L2:
// find runs against a few fixed distances (SSE2 compares 16 positions at a time), count
// the literals between them, build length-limited Huffman codes, then write. The block
// type (dynamic, fixed or stored) is chosen from exact bit counts before writing, so a
// piece is never larger than its stored form. Single-threaded: the caller runs pieces
// in parallel. Allocates nothing: the matches live in memory the caller provides
// (deflate_scratch_bytes), everything else on the stack, so a worker thread never meets
// an allocation failure it could not report.
#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "png.h"

namespace tbfast {

namespace {

// ---------------------------------------------------------------- deflate tables -------
// RFC 1951 section 3.2.5.

constexpr int kNumLitLen = 286;
constexpr int kNumLitLenFixed = 288;  // the fixed code also assigns codes to 286 and 287
constexpr int kNumDist = 30;
constexpr int kNumCodeLen = 19;
constexpr int kMaxBits = 15;
constexpr int kMaxLitLenBits = 14;  // one bit short of deflate's limit: 4 codes fit one flush
constexpr int kMaxCodeLenBits = 7;
constexpr int kMaxMatch = 258;
constexpr int64_t kMaxStored = 65535;
constexpr int kMaxDists = 8;

constexpr uint16_t kLenBase[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                   31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr uint8_t kLenExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr uint16_t kDistBase[30] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,    65,    97,    129,
                                    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
constexpr uint8_t kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
constexpr uint8_t kCodeLenOrder[kNumCodeLen] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

// Length code (0..28) of each match length 0..258 (entries below 3 unused).
struct LenCodes {
  uint8_t code[kMaxMatch + 1];
  LenCodes() {
    memset(code, 0, sizeof code);
    for (int c = 0; c < 29; ++c) {
      int hi = c == 28 ? kMaxMatch : kLenBase[c + 1] - 1;
      for (int len = kLenBase[c]; len <= hi; ++len) code[len] = (uint8_t)c;
    }
  }
};
const LenCodes kLenCodes;

int dist_code(int32_t d) {
  int c = 0;
  while (c + 1 < kNumDist && kDistBase[c + 1] <= d) ++c;
  return c;
}

// Shortest run worth a match: a length-3 match costs a length code and a distance code
// (about as much as three small residual literals), and far distances add extra bits.
constexpr int kMinRunNear = 4;  // distances 1..4: the byte and the pixel before
constexpr int kMinRunFar = 6;
int min_run(int32_t d) { return d <= 4 ? kMinRunNear : kMinRunFar; }

// Bit k set where bits k .. k + run - 1 of m are all set (run = 4 or 6).
inline uint32_t run_flags(uint32_t m, int run) {
  const uint32_t t2 = m & (m >> 1), t4 = t2 & (t2 >> 2);
  return run == kMinRunNear ? t4 : t4 & (t2 >> 4);
}

// ---------------------------------------------------------------- matching -------------

struct Match {
  int64_t pos;
  int32_t len;
  int32_t dist;  // index into the piece's distance list
};

// The matches of one piece, in caller-provided memory: every match is at least
// kMinRunNear long, so a piece of n bytes has at most n / kMinRunNear + 1 of them.
struct Matches {
  Match* data;
  int64_t size = 0;
  void clear() { size = 0; }
  void push_back(const Match& m) { data[size++] = m; }
  const Match* begin() const { return data; }
  const Match* end() const { return data + size; }
};
int64_t max_matches(int64_t n) { return n / kMinRunNear + 1; }

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

// Length of the run x[p + k] == x[p + k - d] for k = 0, 1, ..., at most `limit`.
inline int32_t run_length(const uint8_t* x, int64_t p, int32_t d, int32_t limit) {
  int32_t k = 0;
  for (; k + 8 <= limit; k += 8) {
    uint64_t diff = load64(x + p + k) ^ load64(x + p + k - d);
    if (diff) return k + (__builtin_ctzll(diff) >> 3);  // little-endian: lowest byte first
  }
  while (k < limit && x[p + k] == x[p + k - d]) ++k;
  return k;
}

// Bit k (k < 16) set: some distance d <= i has a run of at least min_run(d) bytes
// x[i + k + j] == x[i + k + j - d] starting there. Needs i + 32 <= n and nd <= kMaxDists.
// A run at one distance is also a run in the OR of all distances' equality masks, so that
// OR (cheap) is tested first and rejects most windows of noisy data.
inline uint32_t run_starts(const uint8_t* x, int64_t i, const int32_t* dists, const int* runs, int nd) {
  uint32_t starts = 0;
#if defined(__SSE2__)
  const __m128i lo = _mm_loadu_si128((const __m128i*)(x + i));
  const __m128i hi = _mm_loadu_si128((const __m128i*)(x + i + 16));
  __m128i eq_lo[kMaxDists], eq_hi[kMaxDists];
  __m128i any_lo = _mm_setzero_si128(), any_hi = _mm_setzero_si128();
  for (int k = 0; k < nd; ++k) {
    const int32_t d = dists[k] <= i ? dists[k] : 0;  // the 32 positions all need d bytes before them
    eq_lo[k] = d ? _mm_cmpeq_epi8(lo, _mm_loadu_si128((const __m128i*)(x + i - d))) : _mm_setzero_si128();
    eq_hi[k] = d ? _mm_cmpeq_epi8(hi, _mm_loadu_si128((const __m128i*)(x + i + 16 - d))) : _mm_setzero_si128();
    any_lo = _mm_or_si128(any_lo, eq_lo[k]);
    any_hi = _mm_or_si128(any_hi, eq_hi[k]);
  }
  auto mask = [](__m128i l, __m128i h) {
    return (uint32_t)_mm_movemask_epi8(l) | (uint32_t)_mm_movemask_epi8(h) << 16;
  };
  if (!(run_flags(mask(any_lo, any_hi), kMinRunNear) & 0xFFFF)) return 0;
  for (int k = 0; k < nd; ++k) starts |= run_flags(mask(eq_lo[k], eq_hi[k]), runs[k]);
#else
  for (int k = 0; k < nd; ++k) {
    const int32_t d = dists[k];
    if (d > i) continue;
    uint32_t m = 0;
    for (int b = 0; b < 32; ++b) m |= (uint32_t)(x[i + b] == x[i + b - d]) << b;
    starts |= run_flags(m, runs[k]);
  }
#endif
  return starts & 0xFFFF;
}

// Greedy parse: at the first position where some distance has a run of at least its
// min_run, the longest run over the distances (the first distance on ties) becomes a
// match, and the scan resumes after it. The masks only flag real matches, so no
// position is examined twice.
void find_matches(const uint8_t* x, int64_t n, const int32_t* dists, int nd, Matches& out) {
  out.clear();
  int runs[8];
  for (int k = 0; k < nd; ++k) runs[k] = min_run(dists[k]);
  auto longest = [&](int64_t p, Match* m) {
    const int32_t limit = (int32_t)std::min<int64_t>(kMaxMatch, n - p);
    m->len = 0;
    for (int k = 0; k < nd; ++k) {
      if (dists[k] > p) continue;
      int32_t len = run_length(x, p, dists[k], limit);
      if (len >= runs[k] && len > m->len) {
        m->len = len;
        m->dist = k;
      }
    }
    m->pos = p;
    return m->len > 0;
  };
  Match m;
  int64_t i = 0, next = 0;  // window start; first position not yet covered by a match
  while (i + 32 <= n) {
    // flags depend only on the data, so one window serves every match that starts in it
    uint32_t starts = run_starts(x, i, dists, runs, nd);
    for (;;) {
      starts &= next - i >= 16 ? 0u : ~0u << (next > i ? next - i : 0);
      if (!starts) break;
      longest(i + __builtin_ctz(starts), &m);  // always a match: the flag guarantees one
      out.push_back(m);
      next = m.pos + m.len;
    }
    i = std::max(i + 16, next);
  }
  i = std::max(i, next);
  while (i < n) {
    if (longest(i, &m)) {
      out.push_back(m);
      i += m.len;
    } else {
      ++i;
    }
  }
}

// ---------------------------------------------------------------- Huffman codes --------

// Code lengths for freq[0, n) (0 for unused symbols), none longer than max_bits.
// Huffman lengths by the in-place Moffat-Katajainen method on the sorted frequencies;
// if the longest code is too long, the frequencies are halved (kept >= 1) and the code
// rebuilt, which flattens the tree. Fewer than two used symbols get two codes of
// length 1 (symbols 0/1 added as needed), so every code is complete, as zlib requires.
constexpr int kMaxSymbols = kNumLitLenFixed;  // the largest alphabet (n <= this)

void huffman_lengths(const uint64_t* freq, int n, int max_bits, uint8_t* lens) {
  uint64_t f[kMaxSymbols];
  memcpy(f, freq, n * sizeof *f);
  int used = 0;
  for (int s = 0; s < n; ++s) used += f[s] > 0;
  for (int s = 0; used < 2 && s < n; ++s)
    if (f[s] == 0) {
      f[s] = 1;
      ++used;
    }
  int order[kMaxSymbols];
  uint64_t a[kMaxSymbols];
  for (;;) {
    int m = 0;
    for (int s = 0; s < n; ++s)
      if (f[s]) order[m++] = s;
    // stable by frequency: ties keep symbol order (std::sort, unlike stable_sort, never
    // allocates: even a nothrow new throws inside libstdc++, which needs thread-local
    // memory that a worker thread may fail to get)
    std::sort(order, order + m, [&](int x, int y) { return f[x] < f[y] || (f[x] == f[y] && x < y); });
    for (int k = 0; k < m; ++k) a[k] = f[order[k]];
    // Phase 1: internal node weights; a[k] for k < next become parent indices.
    int leaf = 0, root = 0;
    for (int next = 0; next < m - 1; ++next) {
      for (int child = 0; child < 2; ++child) {
        uint64_t w;
        if (leaf >= m || (root < next && a[root] < a[leaf])) {
          w = a[root];
          a[root++] = (uint64_t)next;
        } else {
          w = a[leaf++];
        }
        a[next] = child ? a[next] + w : w;
      }
    }
    // Phase 2: depths of internal nodes.
    a[m - 2] = 0;
    for (int next = m - 3; next >= 0; --next) a[next] = a[a[next]] + 1;
    // Phase 3: depths of leaves, longest first (a[0] is the rarest symbol).
    int avail = 1, used_here = 0, depth = 0, r = m - 2, next = m - 1;
    while (avail > 0) {
      while (r >= 0 && (int)a[r] == depth) {
        ++used_here;
        --r;
      }
      while (avail > used_here) {
        a[next--] = (uint64_t)depth;
        --avail;
      }
      avail = 2 * used_here;
      ++depth;
      used_here = 0;
    }
    if ((int)a[0] <= max_bits) {
      memset(lens, 0, n);
      for (int k = 0; k < m; ++k) lens[order[k]] = (uint8_t)a[k];
      return;
    }
    for (int s = 0; s < n; ++s)
      if (f[s]) f[s] = (f[s] >> 1) | 1;
  }
}

// Canonical codes (RFC 1951 3.2.2), bit-reversed for LSB-first output, packed as
// code | length << 16.
void canonical_codes(const uint8_t* lens, int n, uint32_t* codes) {
  int count[kMaxBits + 1] = {0};
  for (int s = 0; s < n; ++s) count[lens[s]]++;
  count[0] = 0;
  uint32_t next[kMaxBits + 2] = {0};
  uint32_t code = 0;
  for (int b = 1; b <= kMaxBits; ++b) {
    code = (code + count[b - 1]) << 1;
    next[b] = code;
  }
  for (int s = 0; s < n; ++s) {
    int len = lens[s];
    if (!len) {
      codes[s] = 0;
      continue;
    }
    uint32_t c = next[len]++, rev = 0;
    for (int b = 0; b < len; ++b) rev |= ((c >> b) & 1u) << (len - 1 - b);
    codes[s] = rev | (uint32_t)len << 16;
  }
}

// ---------------------------------------------------------------- bit writer -----------

// LSB-first bit buffer. put() may add at most 56 bits between flush() calls; flush()
// stores 8 bytes at once, so the output needs 8 bytes of slack.
struct BitWriter {
  uint8_t* out;
  uint64_t buf = 0;
  int cnt = 0;

  void put(uint64_t bits, int n) {
    buf |= bits << cnt;
    cnt += n;
  }
  void put_code(uint32_t packed) { put(packed & 0xFFFF, (int)(packed >> 16)); }
  void flush() {
    memcpy(out, &buf, 8);  // little-endian byte order is the deflate bit order
    out += cnt >> 3;
    buf >>= cnt & 56;  // cnt <= 63, so the shift is < 64
    cnt &= 7;
  }
  void align() {
    flush();
    if (cnt) {
      ++out;
      buf = 0;
      cnt = 0;
    }
  }
};

// ---------------------------------------------------------------- block writing --------

struct Symbols {
  uint64_t lit[kNumLitLen] = {0};
  uint64_t dist[kNumDist] = {0};
  uint64_t extra_bits = 0;  // length and distance extra bits of all matches
};

// Symbol counts of a piece: literal bytes between matches go to four tables (one per
// byte lane, hiding store-to-load latency), summed once at the end.
void count_symbols(const uint8_t* x, int64_t n, const Matches& matches, const int* dcode, Symbols& sym) {
  uint64_t h[4][256];
  memset(h, 0, sizeof h);
  auto literals = [&](int64_t a, int64_t b) {
    for (; a + 4 <= b; a += 4) {
      h[0][x[a]]++;
      h[1][x[a + 1]]++;
      h[2][x[a + 2]]++;
      h[3][x[a + 3]]++;
    }
    for (; a < b; ++a) h[0][x[a]]++;
  };
  int64_t pos = 0;
  for (const Match& m : matches) {
    literals(pos, m.pos);
    const int lc = kLenCodes.code[m.len], dc = dcode[m.dist];
    sym.lit[257 + lc]++;
    sym.dist[dc]++;
    sym.extra_bits += kLenExtra[lc] + kDistExtra[dc];
    pos = m.pos + m.len;
  }
  literals(pos, n);
  for (int s = 0; s < 256; ++s) sym.lit[s] += h[0][s] + h[1][s] + h[2][s] + h[3][s];
  sym.lit[256] = 1;
}

// Dynamic block header: code lengths run-length coded with symbols 16/17/18.
struct DynamicHeader {
  int hlit, hdist, hclen;
  uint8_t cl_lens[kNumCodeLen];
  uint32_t cl_codes[kNumCodeLen];
  uint16_t ops[kNumLitLen + kNumDist];  // symbol | extra value << 5; each covers >= 1 length
  int num_ops = 0;
  uint64_t bits;

  DynamicHeader(const uint8_t* lit_lens, const uint8_t* dist_lens) {
    hlit = kNumLitLen;
    while (hlit > 257 && !lit_lens[hlit - 1]) --hlit;
    hdist = kNumDist;
    while (hdist > 1 && !dist_lens[hdist - 1]) --hdist;
    uint8_t all[kNumLitLen + kNumDist];
    memcpy(all, lit_lens, hlit);
    memcpy(all + hlit, dist_lens, hdist);
    const int total = hlit + hdist;
    uint64_t cl_freq[kNumCodeLen] = {0};
    for (int i = 0; i < total;) {
      int v = all[i], run = 1;
      while (i + run < total && all[i + run] == v) ++run;
      i += run;
      if (v == 0) {
        while (run >= 11) {
          int k = std::min(run, 138);
          push_op((uint16_t)(18 | (k - 11) << 5));
          run -= k;
        }
        if (run >= 3) {
          push_op((uint16_t)(17 | (run - 3) << 5));
          run = 0;
        }
      } else {
        push_op((uint16_t)v);
        --run;
        while (run >= 3) {
          int k = std::min(run, 6);
          push_op((uint16_t)(16 | (k - 3) << 5));
          run -= k;
        }
      }
      while (run-- > 0) push_op((uint16_t)v);
    }
    for (int k = 0; k < num_ops; ++k) cl_freq[ops[k] & 31]++;
    huffman_lengths(cl_freq, kNumCodeLen, kMaxCodeLenBits, cl_lens);
    canonical_codes(cl_lens, kNumCodeLen, cl_codes);
    hclen = kNumCodeLen;
    while (hclen > 4 && !cl_lens[kCodeLenOrder[hclen - 1]]) --hclen;
    bits = 5 + 5 + 4 + 3 * (uint64_t)hclen;
    for (int k = 0; k < num_ops; ++k) bits += cl_lens[ops[k] & 31] + extra_bits(ops[k] & 31);
  }

  void push_op(uint16_t op) { ops[num_ops++] = op; }

  static int extra_bits(int sym) { return sym == 16 ? 2 : sym == 17 ? 3 : sym == 18 ? 7 : 0; }

  void write(BitWriter& w) const {
    w.put((uint64_t)(hlit - 257), 5);
    w.put((uint64_t)(hdist - 1), 5);
    w.put((uint64_t)(hclen - 4), 4);
    w.flush();
    for (int k = 0; k < hclen; ++k) {
      w.put(cl_lens[kCodeLenOrder[k]], 3);
      if (k % 16 == 15) w.flush();
    }
    w.flush();
    for (int k = 0; k < num_ops; ++k) {
      const uint16_t op = ops[k];
      int sym = op & 31;
      w.put_code(cl_codes[sym]);
      w.put((uint64_t)(op >> 5), extra_bits(sym));
      w.flush();
    }
  }
};

void fixed_lengths(uint8_t* lit, uint8_t* dist) {
  for (int s = 0; s < kNumLitLenFixed; ++s) lit[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
  for (int s = 0; s < kNumDist; ++s) dist[s] = 5;
}

uint64_t data_bits(const Symbols& sym, const uint8_t* lit_lens, const uint8_t* dist_lens) {
  uint64_t bits = sym.extra_bits;
  for (int s = 0; s < kNumLitLen; ++s) bits += sym.lit[s] * lit_lens[s];
  for (int s = 0; s < kNumDist; ++s) bits += sym.dist[s] * dist_lens[s];
  return bits;
}

// Literals x[0, n), codes of at most 14 bits (fixed code: 9). Four codes are merged
// into one 56-bit word before touching the bit buffer, so the serial dependency through
// the buffer is one put and one flush per four literals.
void put_literals(BitWriter& w, const uint8_t* x, int64_t n, const uint32_t* lit) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32_t e0 = lit[x[i]], e1 = lit[x[i + 1]], e2 = lit[x[i + 2]], e3 = lit[x[i + 3]];
    const uint32_t l0 = e0 >> 16, l1 = e1 >> 16, l2 = e2 >> 16, l3 = e3 >> 16;
    const uint64_t c01 = (e0 & 0xFFFF) | (uint64_t)(e1 & 0xFFFF) << l0;
    const uint64_t c23 = (e2 & 0xFFFF) | (uint64_t)(e3 & 0xFFFF) << l2;
    w.put(c01 | c23 << (l0 + l1), (int)(l0 + l1 + l2 + l3));
    w.flush();
  }
  for (; i < n; ++i) w.put_code(lit[x[i]]);
  w.flush();
}

void write_huffman_data(BitWriter& w, const uint8_t* x, int64_t n, const Matches& matches, const int* dcode,
                        const int32_t* dists, const uint8_t* lit_lens, const uint8_t* dist_lens) {
  uint32_t lit[kNumLitLenFixed], dist[kNumDist];
  canonical_codes(lit_lens, kNumLitLenFixed, lit);
  canonical_codes(dist_lens, kNumDist, dist);
  auto literals = [&](int64_t a, int64_t b) { put_literals(w, x + a, b - a, lit); };
  int64_t pos = 0;
  for (const Match& m : matches) {
    literals(pos, m.pos);
    int lc = kLenCodes.code[m.len];
    int dc = dcode[m.dist];
    w.put_code(lit[257 + lc]);
    w.put((uint64_t)(m.len - kLenBase[lc]), kLenExtra[lc]);
    w.put_code(dist[dc]);
    w.put((uint64_t)(dists[m.dist] - kDistBase[dc]), kDistExtra[dc]);
    w.flush();
    pos = m.pos + m.len;
  }
  literals(pos, n);
  w.put_code(lit[256]);
  w.flush();
}

int64_t stored_size(int64_t n) { return n + 5 * std::max<int64_t>(1, (n + kMaxStored - 1) / kMaxStored); }

uint8_t* write_stored(const uint8_t* x, int64_t n, bool final, uint8_t* out) {
  int64_t i = 0;
  do {
    int64_t k = std::min(kMaxStored, n - i);
    bool last = i + k >= n;
    *out++ = (uint8_t)(final && last);  // BFINAL, BTYPE 00, then padding to the byte
    out[0] = (uint8_t)k;
    out[1] = (uint8_t)(k >> 8);
    out[2] = (uint8_t)~k;
    out[3] = (uint8_t)(~k >> 8);
    memcpy(out + 4, x + i, k);
    out += 4 + k;
    i += k;
  } while (i < n);
  return out;
}

// ---------------------------------------------------------------- CRC-32 ---------------

// Slicing-by-8 tables for the reflected polynomial 0xEDB88320 (PNG and zlib).
struct CrcTables {
  uint32_t t[8][256];
  CrcTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
      t[0][i] = c;
    }
    for (int s = 1; s < 8; ++s)
      for (int i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  }
};
const CrcTables kCrc;

}  // namespace

// ---------------------------------------------------------------- entry points ---------

int64_t deflate_piece_bound(int64_t n) { return stored_size(n) + 5 + 16; }

int64_t deflate_scratch_bytes(int64_t n) { return max_matches(n) * (int64_t)sizeof(Match); }

int64_t deflate_piece(const uint8_t* x, int64_t n, const int32_t* dists, int nd, int32_t level, bool final,
                      uint8_t* out, void* scratch) {
  if (level == kPngStored || n == 0) return write_stored(x, n, final, out) - out;
  Matches matches{static_cast<Match*>(scratch)};
  find_matches(x, n, dists, nd, matches);
  int dcode[kMaxDists];
  for (int k = 0; k < nd; ++k) dcode[k] = dist_code(dists[k]);
  Symbols sym;
  count_symbols(x, n, matches, dcode, sym);

  uint8_t dyn_lit[kNumLitLenFixed] = {0}, dyn_dist[kNumDist], fix_lit[kNumLitLenFixed], fix_dist[kNumDist];
  huffman_lengths(sym.lit, kNumLitLen, kMaxLitLenBits, dyn_lit);
  huffman_lengths(sym.dist, kNumDist, kMaxBits, dyn_dist);
  fixed_lengths(fix_lit, fix_dist);
  DynamicHeader header(dyn_lit, dyn_dist);
  const uint64_t dyn_bits = 3 + header.bits + data_bits(sym, dyn_lit, dyn_dist);
  const uint64_t fix_bits = 3 + data_bits(sym, fix_lit, fix_dist);
  const uint64_t end_bits = final ? 0 : 3;  // the empty stored block that realigns
  const int64_t end_bytes = final ? 0 : 4;
  const int64_t dyn_size = (int64_t)((dyn_bits + end_bits + 7) / 8) + end_bytes;
  const int64_t fix_size = (int64_t)((fix_bits + end_bits + 7) / 8) + end_bytes;
  if (stored_size(n) <= std::min(dyn_size, fix_size)) return write_stored(x, n, final, out) - out;

  BitWriter w{out};
  const bool dynamic = dyn_size <= fix_size;
  w.put(final ? 1 : 0, 1);
  w.put(dynamic ? 2 : 1, 2);
  if (dynamic) header.write(w);
  if (dynamic)
    write_huffman_data(w, x, n, matches, dcode, dists, dyn_lit, dyn_dist);
  else
    write_huffman_data(w, x, n, matches, dcode, dists, fix_lit, fix_dist);
  if (!final) {
    w.put(0, 3);  // BFINAL 0, BTYPE 00: empty stored block
    w.align();
    const uint8_t sync[4] = {0x00, 0x00, 0xFF, 0xFF};
    memcpy(w.out, sync, 4);
    return w.out + 4 - out;
  }
  w.align();
  return w.out - out;
}

uint32_t adler32_update(uint32_t adler, const uint8_t* p, int64_t n) {
  constexpr uint32_t kBase = 65521;
  constexpr int64_t kNMax = 5552;  // most bytes before s2 could overflow 32 bits
  uint32_t s1 = adler & 0xFFFF, s2 = adler >> 16;
  while (n > 0) {
    int64_t k = std::min(n, kNMax);
    n -= k;
    // blocks of 32: s2 gains 32 * s1 plus the position-weighted sum of the block
    for (; k >= 32; k -= 32, p += 32) {
      uint32_t a = 0, b = 0;
      for (int j = 0; j < 32; ++j) {
        a += p[j];
        b += (uint32_t)(32 - j) * p[j];
      }
      s2 += 32 * s1 + b;
      s1 += a;
    }
    for (; k > 0; --k) {
      s1 += *p++;
      s2 += s1;
    }
    s1 %= kBase;
    s2 %= kBase;
  }
  return s1 | (s2 << 16);
}

uint32_t adler32_combine(uint32_t a1, uint32_t a2, int64_t len2) {
  // adler(A+B): s1 = s1A + s1B - 1, s2 = s2A + s2B + len(B) * (s1A - 1)  (mod 65521)
  constexpr uint64_t kBase = 65521;
  uint64_t rem = (uint64_t)len2 % kBase;
  uint64_t s1a = a1 & 0xFFFF, s2a = a1 >> 16, s1b = a2 & 0xFFFF, s2b = a2 >> 16;
  uint64_t s1 = (s1a + s1b + kBase - 1) % kBase;
  uint64_t s2 = (s2a + s2b + rem * ((s1a + kBase - 1) % kBase)) % kBase;
  return (uint32_t)(s1 | (s2 << 16));
}

uint32_t crc32_update(uint32_t crc, const uint8_t* p, int64_t n) {
  crc = ~crc;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const auto& t = kCrc.t;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v = load64(p) ^ crc;
    crc = t[7][v & 0xFF] ^ t[6][(v >> 8) & 0xFF] ^ t[5][(v >> 16) & 0xFF] ^ t[4][(v >> 24) & 0xFF] ^
          t[3][(v >> 32) & 0xFF] ^ t[2][(v >> 40) & 0xFF] ^ t[1][(v >> 48) & 0xFF] ^ t[0][v >> 56];
  }
#endif
  for (; n > 0; --n) crc = kCrc.t[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

}  // namespace tbfast
