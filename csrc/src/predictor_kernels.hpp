// Private to the predictor: the per-ISA forward kernels of one tile of configs.
#pragma once

#include <cstdint>

namespace moofa::detail {

// Rows per tile: a multiple of every kernel's register block (4, 6, 8).
constexpr int kTileRows = 48;
// Output chunk of the first layer's chunk-major gather table (floats).
constexpr int kFirstChunk = 32;

// Dense layers are padded: out_pad is a multiple of 32 floats (two AVX-512 vectors),
// in_pad is the previous layer's out_pad. The first layer is a gather table of
// in_pad rows stored chunk-major: [out_pad / kFirstChunk][in_pad][kFirstChunk]. The
// last layer has out == 1 and keeps its weight as one column of in_pad floats.
struct LayerView {
  int in_pad = 0, out_pad = 0;
  int ld = 0;  // floats between weight rows: out_pad plus 16, see predictor.cpp
  const float* weight = nullptr;
  const float* bias = nullptr;
};

struct TileWork {
  int rows = 0;                       // configs in this tile (<= kTileRows)
  const int32_t* features = nullptr;  // rows x max_features gather rows, as row * kFirstChunk
  const int32_t* n_features = nullptr;
  int max_features = 0;
  const LayerView* layers = nullptr;  // at least two: first (row table) ... last (out 1)
  int n_layers = 0;
  float* buf0 = nullptr;  // kTileRows x stride activations, 64-byte aligned
  float* buf1 = nullptr;
  int stride = 0;
  float* y = nullptr;  // rows outputs (before the skip, scale and offset)
  // Reduced precision (optional): the first layer's gather table as int16, same
  // chunk-major layout, value = int * column_scale[c]. Null for the fp32 path.
  const int16_t* first_i16 = nullptr;
  const float* column_scale = nullptr;
};

void forward_tile_generic(const TileWork& work);
void forward_tile_avx2(const TileWork& work);
void forward_tile_avx512(const TileWork& work);

}  // namespace moofa::detail
