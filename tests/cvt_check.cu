// Device-only check (scripts/gpu-check runs it) over all 2^32 float bit patterns: Elem<BF16 /
// F16>::encode2 (typed.hpp: one hardware cvt.rn for two floats on sm_80+, NaNs patched) against the
// portable f32_to_bf16 / f32_to_f16 (numeric.hpp), both halves; and fast_silu (portability.hpp:
// ex2.approx.ftz, rcp.approx.ftz) against its __expf / __fdividef form, bit for bit (any two NaNs
// equal). Exit status 1 on any mismatch.
#include <cstdint>
#include <cstdio>

#include "gpu/typed.hpp"

namespace {

__global__ void compare(unsigned long long* bad, uint32_t* example, uint32_t base) {
  const uint32_t u = base + blockIdx.x * blockDim.x + threadIdx.x;
  const float x = __uint_as_float(u);
  const uint32_t hw[2] = {gdn::gpu::Elem<GDN_DTYPE_BF16>::encode2(x, x), gdn::gpu::Elem<GDN_DTYPE_F16>::encode2(x, x)};
  const uint32_t sw[2] = {gdn::f32_to_bf16(x), gdn::f32_to_f16(x)};
  for (int i = 0; i < 2; ++i)
    if ((hw[i] & 0xffffu) != sw[i] || (hw[i] >> 16) != sw[i]) {
      atomicAdd(bad + i, 1ull);
      example[i] = u;
    }
  const float silu = gdn::gpu::fast_silu(x), ref = gdn::gpu::silu_expf(x);
  if (__float_as_uint(silu) != __float_as_uint(ref) && !(silu != silu && ref != ref)) {
    atomicAdd(bad + 2, 1ull);
    example[2] = u;
  }
}

}  // namespace

int main() {
  unsigned long long* bad = nullptr;
  uint32_t* example = nullptr;
  if (cudaMalloc(&bad, 3 * sizeof *bad) != cudaSuccess || cudaMalloc(&example, 3 * sizeof *example) != cudaSuccess) {
    std::printf("cvt_check: no device memory\n");
    return 2;
  }
  cudaMemset(bad, 0, 3 * sizeof *bad);
  cudaMemset(example, 0, 3 * sizeof *example);
  constexpr uint64_t kChunk = uint64_t(1) << 30;
  for (uint64_t base = 0; base < (uint64_t(1) << 32); base += kChunk)
    compare<<<unsigned(kChunk / 256), 256>>>(bad, example, uint32_t(base));
  unsigned long long n[3] = {0, 0, 0};
  uint32_t e[3] = {0, 0, 0};
  cudaMemcpy(n, bad, sizeof n, cudaMemcpyDeviceToHost);
  cudaMemcpy(e, example, sizeof e, cudaMemcpyDeviceToHost);
  const cudaError_t err = cudaGetLastError();
  const unsigned long long all = n[0] + n[1] + n[2];
  std::printf("cvt_check (%s): over 2^32 floats, hardware vs portable codes: bf16 %llu mismatches, f16 %llu; "
              "fast_silu vs __expf form: %llu%s\n",
              cudaGetErrorString(err), n[0], n[1], n[2], all ? "" : " -- PASSED");
  if (all) std::printf("e.g. bf16 at 0x%08x, f16 at 0x%08x, silu at 0x%08x\n", e[0], e[1], e[2]);
  return err != cudaSuccess || all ? 1 : 0;
}
