"""The Python binding with PyTorch tensors on the CUDA backend (runs on the GPU device machine;
skipped where torch, CUDA or libgdn's CUDA backend is missing)."""
import unittest

import gdn
from gdn import _lib as L
from gdn import fla

try:
    import torch
    HAVE = torch.cuda.is_available() and L.lib().gdn_backend_compiled(L.BACKEND_CUDA)
except ImportError:
    HAVE = False


@unittest.skipUnless(HAVE, "needs torch with CUDA and libgdn built with CUDA")
class TorchCudaTest(unittest.TestCase):
    def test_fla_drop_in_cuda_matches_cpu(self):
        torch.manual_seed(0)
        B, T, HK, HV, K, V = 2, 100, 2, 4, 64, 64
        dev = torch.device("cuda")
        q = torch.randn(B, T, HK, K, dtype=torch.bfloat16)
        k = torch.randn(B, T, HK, K, dtype=torch.bfloat16)
        v = torch.randn(B, T, HV, V, dtype=torch.bfloat16)
        g = -torch.rand(B, T, HV, dtype=torch.float32)
        beta = torch.rand(B, T, HV, dtype=torch.bfloat16)
        h0 = torch.randn(B, HV, K, V, dtype=torch.float32) * 0.1
        o_cpu, h_cpu = fla.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                                  use_qk_l2norm_in_kernel=True)
        o_gpu, h_gpu = fla.chunk_gated_delta_rule(q.to(dev), k.to(dev), v.to(dev), g.to(dev), beta.to(dev),
                                                  initial_state=h0.to(dev), output_final_state=True,
                                                  use_qk_l2norm_in_kernel=True)
        torch.cuda.synchronize()
        self.assertTrue(o_gpu.is_cuda and h_gpu.is_cuda)
        torch.testing.assert_close(o_gpu.cpu().float(), o_cpu.float(), rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(h_gpu.cpu(), h_cpu, rtol=1e-3, atol=1e-3)

    def test_decode_on_a_torch_stream(self):
        ctx = gdn.Context("cuda")
        layer = gdn.Layer(ctx, num_k_heads=16, num_v_heads=32, head_k_dim=128, head_v_dim=128, act_dtype="bf16")
        dev = torch.device("cuda")
        B = 4
        q = torch.randn(B, 1, 16, 128, device=dev, dtype=torch.bfloat16)
        k = torch.randn(B, 1, 16, 128, device=dev, dtype=torch.bfloat16)
        v = torch.randn(B, 1, 32, 128, device=dev, dtype=torch.bfloat16)
        a = torch.randn(B, 1, 32, device=dev, dtype=torch.bfloat16)
        b = torch.randn(B, 1, 32, device=dev, dtype=torch.bfloat16)
        A_log = torch.randn(32, device=dev)
        dt_bias = torch.randn(32, device=dev)
        state = torch.randn(B + 1, 32, 128, 128, device=dev) * 0.1
        slots = torch.tensor([4, 0, -1, 2], device=dev, dtype=torch.int32)
        out = torch.full((B, 1, 32, 128), float("nan"), device=dev, dtype=torch.bfloat16)
        s_cpu = state.cpu()
        o_cpu = torch.empty(out.shape, dtype=torch.bfloat16)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            layer.decode(q=q, k=k, v=v, a=a, b=b, A_log=A_log, dt_bias=dt_bias, state=state, slot_idx=slots, out=out,
                         stream=stream)
        stream.synchronize()
        cpu_layer = gdn.Layer(gdn.Context("cpu"), num_k_heads=16, num_v_heads=32, head_k_dim=128, head_v_dim=128,
                              act_dtype="bf16")
        cpu_layer.decode(q=q.cpu(), k=k.cpu(), v=v.cpu(), a=a.cpu(), b=b.cpu(), A_log=A_log.cpu(),
                         dt_bias=dt_bias.cpu(), state=s_cpu, slot_idx=slots.cpu(), out=o_cpu)
        torch.testing.assert_close(out.cpu().float(), o_cpu.float(), rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(state.cpu(), s_cpu, rtol=1e-4, atol=1e-4)
        self.assertTrue((out[2] == 0).all())
        with self.assertRaises(gdn.Error):  # host tensors on a CUDA context are refused
            layer.decode(q=q.cpu(), k=k, v=v, a=a, b=b, A_log=A_log, dt_bias=dt_bias, state=state, slot_idx=slots,
                         out=out)


if __name__ == "__main__":
    unittest.main()
