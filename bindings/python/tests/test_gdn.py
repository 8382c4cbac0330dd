"""unittest suite of the Python binding (CPU backend; NumPy only as a test dependency)."""
import ctypes
import os
import unittest

import numpy as np

import gdn
from gdn import fla
from gdn._tensor import View


def reference(q, k, v, g, beta, S, scale, l2norm=True):
    """float64 recurrent gated delta rule for one sequence: q, k [T, HK, K], v [T, HV, V],
    g, beta [T, HV], S [HV, K, V] (updated in place). Returns o [T, HV, V]."""
    T, HK, K = q.shape
    HV, V = v.shape[1], v.shape[2]
    r = HV // HK
    o = np.zeros((T, HV, V))
    for t in range(T):
        for h in range(HV):
            qt, kt = q[t, h // r].astype(np.float64), k[t, h // r].astype(np.float64)
            if l2norm:
                qt = qt / np.sqrt((qt * qt).sum() + 1e-6)
                kt = kt / np.sqrt((kt * kt).sum() + 1e-6)
            qt = qt * scale
            S[h] *= np.exp(g[t, h])
            u = beta[t, h] * (v[t, h] - S[h].T @ kt)
            S[h] += np.outer(kt, u)
            o[t, h] = S[h].T @ qt
    return o


def raw_gate(a, b, A_log, dt_bias):
    x = a + dt_bias
    sp = np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))
    return -np.exp(A_log) * sp, 1 / (1 + np.exp(-b))


def to_bf16_bits(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


class ArrayInterfaceOnly:
    """Hides __dlpack__ so the __array_interface__ path is used."""

    def __init__(self, a):
        self.a = a
        self.__array_interface__ = a.__array_interface__


class BindingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ctx = gdn.Context("cpu", num_threads=2)

    def setUp(self):
        self.rng = np.random.default_rng(1234)

    def make_layer(self, HK=2, HV=4, K=16, V=8, act="f32", **kw):
        return gdn.Layer(self.ctx, num_k_heads=HK, num_v_heads=HV, head_k_dim=K, head_v_dim=V, act_dtype=act,
                         out_dtype=act, fp8_group_size=V, **kw)

    def test_version(self):
        self.assertEqual(len(gdn.version()), 3)
        self.assertEqual(gdn._lib.lib().gdn_version_string().decode(), "%d.%d.%d" % gdn.version())

    def decode_inputs(self, B=3, Tn=1, HK=2, HV=4, K=16, V=8, slots=5):
        r = self.rng
        f = lambda *s: r.uniform(-1, 1, s).astype(np.float32)
        return dict(q=f(B, Tn, HK, K), k=f(B, Tn, HK, K), v=f(B, Tn, HV, V), a=f(B, Tn, HV), b=f(B, Tn, HV),
                    A_log=f(HV), dt_bias=f(HV), state=(f(slots, HV, K, V) * 0.5))

    def test_decode_matches_reference_with_pad_slot(self):
        layer = self.make_layer()
        x = self.decode_inputs(Tn=2)
        slots = np.array([4, -1, 1], dtype=np.int32)
        out = np.full((3, 2, 4, 8), np.nan, dtype=np.float32)
        S = x["state"].astype(np.float64)
        want = np.zeros(out.shape)
        g, beta = raw_gate(x["a"].astype(np.float64), x["b"].astype(np.float64), x["A_log"].astype(np.float64),
                           x["dt_bias"].astype(np.float64))
        for bi, s in enumerate(slots):
            if s < 0:
                continue
            want[bi] = reference(x["q"][bi], x["k"][bi], x["v"][bi], g[bi], beta[bi], S[s], 16 ** -0.5)
        layer.decode(slot_idx=slots, out=out, **x)
        np.testing.assert_allclose(out, want, rtol=2e-4, atol=2e-4)
        np.testing.assert_allclose(x["state"], S, rtol=5e-5, atol=5e-5)

    def test_array_interface_path_equals_dlpack_path(self):
        layer = self.make_layer()
        x = self.decode_inputs()
        y = {k: v.copy() for k, v in x.items()}
        slots = np.array([0, 1, 2], dtype=np.int32)
        o1 = np.zeros((3, 1, 4, 8), np.float32)
        o2 = np.zeros_like(o1)
        layer.decode(slot_idx=slots, out=o1, **x)
        wrapped = {k: ArrayInterfaceOnly(v) for k, v in y.items()}
        layer.decode(slot_idx=ArrayInterfaceOnly(slots), out=ArrayInterfaceOnly(o2), **wrapped)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(x["state"], y["state"])

    def test_bf16_through_uint16_storage(self):
        layer = self.make_layer(act="bf16")
        x = self.decode_inputs()
        bits = {k: to_bf16_bits(v) for k, v in x.items() if k in ("q", "k", "v", "a", "b")}
        out = np.zeros((3, 1, 4, 8), np.uint16)
        state = x["state"].copy()
        layer.decode(slot_idx=np.array([0, 1, 2], np.int32), out=out, A_log=x["A_log"], dt_bias=x["dt_bias"],
                     state=state, **bits)
        vals = {k: from_bf16_bits(v).astype(np.float64) for k, v in bits.items()}
        g, beta = raw_gate(vals["a"], vals["b"], x["A_log"].astype(np.float64), x["dt_bias"].astype(np.float64))
        S = x["state"].astype(np.float64)
        for bi in range(3):
            want = reference(vals["q"][bi], vals["k"][bi], vals["v"][bi], g[bi], beta[bi], S[bi], 16 ** -0.5)
            np.testing.assert_allclose(from_bf16_bits(out[bi]), want, rtol=1.5e-2, atol=1.5e-2)

    def test_prefill_equals_token_by_token_decode(self):
        layer = self.make_layer()
        T = 70
        r = self.rng
        f = lambda *s: r.uniform(-1, 1, s).astype(np.float32)
        q, k, v = f(T, 2, 16), f(T, 2, 16), f(T, 4, 8)
        g = -r.uniform(0, 1, (T, 4)).astype(np.float32)
        beta = r.uniform(0, 1, (T, 4)).astype(np.float32)
        s1 = f(1, 4, 16, 8)
        s2, s3 = s1.copy(), s1.copy()
        o1 = np.zeros((T, 4, 8), np.float32)
        layer.prefill(q=q, k=k, v=v, g=g, beta=beta, state=s1, cu_seqlens=np.array([0, T], np.int32),
                      slot_idx=np.array([0], np.int32), out=o1)
        o2 = np.zeros((1, T, 4, 8), np.float32)
        for t in range(T):
            sl = slice(t, t + 1)
            layer.decode(q=q[None, sl], k=k[None, sl], v=v[None, sl], g=g[None, sl], beta=beta[None, sl], state=s2,
                         slot_idx=np.array([0], np.int32), out=o2[:, sl])
        np.testing.assert_allclose(o1, o2[0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-4)
        # bf16 products are a permission: the CPU backend computes prefill exactly as at fp32.
        low = self.make_layer(prefill_precision="bf16")
        self.assertEqual(low.config.prefill_precision, gdn._lib.PRECISION_BF16)
        o3 = np.zeros((T, 4, 8), np.float32)
        low.prefill(q=q, k=k, v=v, g=g, beta=beta, state=s3, cu_seqlens=np.array([0, T], np.int32),
                    slot_idx=np.array([0], np.int32), out=o3)
        np.testing.assert_array_equal(o1, o3)
        np.testing.assert_array_equal(s1, s3)

    def test_errors_carry_status_and_leave_outputs(self):
        layer = self.make_layer()
        x = self.decode_inputs()
        out = np.full((3, 1, 4, 8), 7.0, np.float32)
        state_before = x["state"].copy()
        x["v"] = x["v"][:, :, :3]  # wrong head count
        with self.assertRaises(gdn.Error) as cm:
            layer.decode(slot_idx=np.array([0, 1, 2], np.int32), out=out, **x)
        self.assertEqual(cm.exception.status_name, "BAD_SHAPE")
        self.assertIn("v", cm.exception.message)
        self.assertTrue((out == 7.0).all())
        np.testing.assert_array_equal(x["state"], state_before)
        with self.assertRaises(gdn.Error) as cm:
            layer.decode(slot_idx=np.array([0, 1, 2], np.int64), out=out, **self.decode_inputs())
        self.assertEqual(cm.exception.status_name, "BAD_DTYPE")
        with self.assertRaises(TypeError):
            layer.decode(bogus=out)
        with self.assertRaises(TypeError):
            layer.decode(q=[1, 2, 3])
        with self.assertRaises(gdn.Error) as cm:
            gdn.Layer(self.ctx, num_k_heads=3, num_v_heads=4)
        self.assertEqual(cm.exception.status_name, "INVALID_ARGUMENT")
        with self.assertRaises(ValueError):
            gdn.Layer(self.ctx, prefill_precision="fp16")
        with self.assertRaises(gdn.Error) as cm:
            gdn.Layer(self.ctx, prefill_precision=5)
        self.assertEqual(cm.exception.status_name, "INVALID_ARGUMENT")
        self.assertIn("prefill_precision", cm.exception.message)
        if not gdn._lib.lib().gdn_backend_compiled(gdn._lib.BACKEND_CUDA):
            with self.assertRaises(gdn.Error) as cm:
                gdn.Context("cuda")
            self.assertEqual(cm.exception.status_name, "BACKEND_UNAVAILABLE")

    def test_norm_fp8(self):
        layer = self.make_layer(V=128, HV=2, HK=1)
        T = 5
        x = self.rng.uniform(-2, 2, (T, 2, 128)).astype(np.float32)
        z = self.rng.uniform(-2, 2, (T, 2, 128)).astype(np.float32)
        w = self.rng.uniform(0.5, 1.5, 128).astype(np.float32)
        out = np.zeros((T, 2, 128), np.uint8)
        scales = np.zeros((T, 2), np.float32)
        layer.norm_gated_fp8_quant(x=x, z=z, weight=w, out=out, scales=scales)
        y = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6) * w * z / (1 + np.exp(-z))
        np.testing.assert_allclose(scales, np.abs(y).max(-1) / 448, rtol=1e-5)
        e, m = (out >> 3) & 15, out & 7
        val = np.where(e > 0, (1 + m / 8) * 2.0 ** (e.astype(np.int32) - 7), m * 2.0 ** -9)
        val = np.where(out & 0x80, -val, val) * scales[..., None]
        np.testing.assert_allclose(val, y, rtol=0.07, atol=1e-3 * np.abs(y).max())
        out16 = np.zeros((T, 2, 128), np.float32)
        gdn.Layer(self.ctx, num_k_heads=1, num_v_heads=2, head_k_dim=16, head_v_dim=128, act_dtype="f32",
                  out_dtype="f32").norm_gated(x=x, z=z, weight=w, out=out16)
        np.testing.assert_allclose(out16, y, rtol=2e-4, atol=2e-4)

    def test_decode_step_equals_the_three_ops(self):
        HK, HV, K, V, B, W = 1, 2, 16, 128, 3, 4
        layer = gdn.Layer(self.ctx, num_k_heads=HK, num_v_heads=HV, head_k_dim=K, head_v_dim=V, act_dtype="f32",
                          out_dtype="f32")
        C = 2 * HK * K + HV * V
        f = lambda *s: self.rng.uniform(-1, 1, s).astype(np.float32)
        x, w, z, a, b = f(B, C), f(C, W) * 0.5, f(B, HV, V), f(B, HV), f(B, HV)
        A_log, dt_bias, nw = f(HV), f(HV), f(V) + 1.5
        conv0, state0 = f(4, C, W - 1), f(4, HV, K, V) * 0.5
        slots = np.array([3, -1, 0], dtype=np.int32)
        # The three ops.
        conv1, state1 = conv0.copy(), state0.copy()
        mixed = np.zeros((B, C), np.float32)
        layer.conv_update(x=x, weight=w, conv_state=conv1, slot_idx=slots, out=mixed)
        core = np.zeros((B, 1, HV, V), np.float32)
        q = mixed[:, :HK * K].reshape(B, 1, HK, K)
        k = mixed[:, HK * K:2 * HK * K].reshape(B, 1, HK, K)
        v = mixed[:, 2 * HK * K:].reshape(B, 1, HV, V)
        layer.decode(q=q, k=k, v=v, a=a.reshape(B, 1, HV), b=b.reshape(B, 1, HV), A_log=A_log, dt_bias=dt_bias,
                     state=state1, slot_idx=slots, out=core)
        out1, sc1 = np.zeros((B, HV, V), np.uint8), np.zeros((B, HV), np.float32)
        layer.norm_gated_fp8_quant(x=core.reshape(B, HV, V), z=z, weight=nw, out=out1, scales=sc1)
        # The step.
        conv2, state2 = conv0.copy(), state0.copy()
        out2, sc2 = np.zeros((B, HV, V), np.uint8), np.zeros((B, HV), np.float32)
        layer.decode_step(x=x, conv_weight=w, conv_state=conv2, z=z, a=a, b=b, A_log=A_log, dt_bias=dt_bias,
                          state=state2, slot_idx=slots, norm_weight=nw, out=out2, scales=sc2)
        for got, want in ((out2, out1), (sc2, sc1), (conv2, conv1), (state2, state1)):
            np.testing.assert_array_equal(got, want)
        self.assertFalse(np.array_equal(state2, state0))

    def test_fla_drop_ins(self):
        r = self.rng
        B, T, HK, HV, K, V = 2, 37, 2, 4, 16, 8
        f = lambda *s: r.uniform(-1, 1, s).astype(np.float32)
        q, k, v = f(B, T, HK, K), f(B, T, HK, K), f(B, T, HV, V)
        g = -r.uniform(0, 1, (B, T, HV)).astype(np.float32)
        beta = r.uniform(0, 1, (B, T, HV)).astype(np.float32)
        h0 = f(B, HV, K, V)
        o, hT = fla.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                           use_qk_l2norm_in_kernel=True)
        S = h0.astype(np.float64)
        for bi in range(B):
            want = reference(q[bi], k[bi], v[bi], g[bi].astype(np.float64), beta[bi], S[bi], K ** -0.5)
            np.testing.assert_allclose(o[bi], want, rtol=2e-4, atol=2e-4)
        np.testing.assert_allclose(hT, S, rtol=2e-4, atol=2e-4)
        o2, h2 = fla.fused_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                                      use_qk_l2norm_in_kernel=True)
        np.testing.assert_allclose(o2, o, rtol=1e-5, atol=1e-5)
        # Varlen: the two sequences back to back with cu_seqlens, B = 1.
        cu = np.array([0, T, 2 * T], np.int64)
        o3, h3 = fla.chunk_gated_delta_rule(q.reshape(1, B * T, HK, K), k.reshape(1, B * T, HK, K),
                                            v.reshape(1, B * T, HV, V), g.reshape(1, B * T, HV),
                                            beta.reshape(1, B * T, HV), initial_state=h0, output_final_state=True,
                                            cu_seqlens=cu, use_qk_l2norm_in_kernel=True)
        np.testing.assert_allclose(o3.reshape(o.shape), o, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h3, hT, rtol=1e-5, atol=1e-5)
        o4, h4 = fla.chunk_gated_delta_rule(q, k, v, g, beta)
        self.assertIsNone(h4)
        self.assertEqual(o4.shape, (B, T, HV, V))

    def test_streams_and_views(self):
        from gdn import _stream
        self.assertIsNone(_stream(None))
        self.assertEqual(_stream(1234), 1234)

        class S:
            cuda_stream = 99
        self.assertEqual(_stream(S()), 99)
        buf = (ctypes.c_float * 8)()
        v = View(ctypes.addressof(buf), gdn._lib.F32, (2, 4), owner=buf)
        self.assertEqual(v.strides, (4, 1))
        with self.assertRaises(ValueError):
            v.with_dtype(gdn._lib.BF16)


if __name__ == "__main__":
    unittest.main()
