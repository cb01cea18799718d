// Device memory bandwidth on the GPU machine, for the decode "bandwidth floor" in
// tools/bench_vs_llamacpp.sh.
//
//   nvcc -O3 -arch=sm_90 -o copy_bw tools/device/copy_bw.cu && ./copy_bw [MiB] [iterations]
//
// Prints one JSON object:
//   copy_gbs  cudaMemcpyAsync device-to-device, (bytes read + bytes written) / time, the usual
//             "copy bandwidth" figure (about 3.0 TB/s on an H100 80GB HBM3);
//   read_gbs  a kernel that only reads (16-byte loads, one partial sum per block), bytes read / time:
//             what a weight-streaming GEMV can reach at best.
// Each figure is the best of `iterations` timed repetitions (CUDA events) after 3 warm-ups, over a
// buffer far larger than L2 (default 2 GiB).
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define CHECK(x)                                                                       \
  do {                                                                                 \
    cudaError_t e_ = (x);                                                              \
    if (e_ != cudaSuccess) {                                                           \
      fprintf(stderr, "copy_bw: %s: %s\n", #x, cudaGetErrorString(e_));                \
      return 1;                                                                        \
    }                                                                                  \
  } while (0)

__global__ void read_kernel(const uint4 *__restrict__ src, size_t n, unsigned *out) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint4 v = src[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  // Keep the loads alive; one write per block at most (acc is almost never this value).
  if (acc == 0x9e3779b9u) out[blockIdx.x] = acc;
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoull(argv[1], nullptr, 10) : 2048;
  int iters = argc > 2 ? atoi(argv[2]) : 20;
  size_t bytes = mib << 20;
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  void *a, *b;
  unsigned *sink;
  CHECK(cudaMalloc(&a, bytes));
  CHECK(cudaMalloc(&b, bytes));
  CHECK(cudaMalloc(&sink, 1 << 20));
  CHECK(cudaMemset(a, 1, bytes));
  CHECK(cudaMemset(b, 2, bytes));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));

  float best_copy = 1e30f, best_read = 1e30f, ms;
  for (int i = 0; i < iters + 3; i++) {
    CHECK(cudaEventRecord(e0));
    CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 3 && ms < best_copy) best_copy = ms;
  }
  int blocks = prop.multiProcessorCount * 8;
  for (int i = 0; i < iters + 3; i++) {
    CHECK(cudaEventRecord(e0));
    read_kernel<<<blocks, 512>>>((const uint4 *)a, bytes / 16, sink);
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    CHECK(cudaGetLastError());
    CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 3 && ms < best_read) best_read = ms;
  }
  printf("{\"device\": \"%s\", \"buffer_mib\": %zu, \"iterations\": %d, \"copy_gbs\": %.1f, \"read_gbs\": %.1f, "
         "\"copy_ms\": %.4f, \"read_ms\": %.4f, \"method\": \"best of %d after 3 warm-ups; copy counts bytes read + written\"}\n",
         prop.name, mib, iters, 2.0 * bytes / (best_copy * 1e6), bytes / (best_read * 1e6), best_copy, best_read, iters);
  return 0;
}
