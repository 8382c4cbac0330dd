"""bf16 vs fp32 state accuracy of gdn_decode (CPU backend) against a float64 recurrence: 256 decode
steps of one sequence at K = V = 128. Run: GDN_LIBRARY=build/libgdn.so.0 PYTHONPATH=bindings/python
python3 bench/bf16_state_accuracy.py"""
import numpy as np, gdn
ctx = gdn.Context("cpu", num_threads=2)
HK, HV, K, V, steps = 1, 2, 128, 128, 256
rng = np.random.default_rng(0)
def bf16(a):  # float32 -> bf16 bits (RNE)
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7fff + ((u >> 16) & 1)) >> 16).astype(np.uint16)
def unbf16(b): return (b.astype(np.uint32) << 16).view(np.float32)
q = rng.uniform(-1, 1, (steps, 1, 1, HK, K)).astype(np.float32)
k = rng.uniform(-1, 1, (steps, 1, 1, HK, K)).astype(np.float32)
v = rng.uniform(-1, 1, (steps, 1, 1, HV, V)).astype(np.float32)
a = rng.uniform(-3, 3, (steps, 1, 1, HV)).astype(np.float32); b = rng.uniform(-3, 3, (steps, 1, 1, HV)).astype(np.float32)
A_log = rng.uniform(-2, 1, HV).astype(np.float32); dt_bias = rng.uniform(-1, 1, HV).astype(np.float32)
# float64 reference
S = np.zeros((HV, K, V)); ref = []
for t in range(steps):
    for h in range(HV):
        qq = q[t,0,0,0].astype(np.float64); kk = k[t,0,0,0].astype(np.float64)
        qq = qq / np.sqrt((qq**2).sum() + 1e-6) * K**-0.5; kk = kk / np.sqrt((kk**2).sum() + 1e-6)
        g = -np.exp(A_log[h]) * np.log1p(np.exp(a[t,0,0,h] + dt_bias[h])); beta = 1/(1+np.exp(-b[t,0,0,h]))
        S[h] *= np.exp(g); u = beta * (v[t,0,0,h] - S[h].T @ kk); S[h] += np.outer(kk, u)
    ref.append(np.einsum('hkv,k->hv', S, qq))
for sd, make in (("f32", lambda: np.zeros((1, HV, K, V), np.float32)), ("bf16", lambda: np.zeros((1, HV, K, V), np.uint16))):
    layer = gdn.Layer(ctx, num_k_heads=HK, num_v_heads=HV, head_k_dim=K, head_v_dim=V, act_dtype="f32", out_dtype="f32", state_dtype=sd)
    st = make(); errs = []
    for t in range(steps):
        out = np.zeros((1, 1, HV, V), np.float32)
        layer.decode(q=q[t], k=k[t], v=v[t], a=a[t], b=b[t], A_log=A_log, dt_bias=dt_bias, state=st, slot_idx=np.array([0], np.int32), out=out)
        errs.append(np.abs(out[0,0] - ref[t]).max() / np.abs(ref[t]).max())
    fin = (unbf16(st) if sd == "bf16" else st)[0].astype(np.float64)
    print("%-5s state: out max rel err step 1 %.1e, 16 %.1e, 64 %.1e, 256 %.1e (max over steps %.1e); final state max abs err %.1e (|S| max %.2f)" % (
        sd, errs[0], errs[15], errs[63], errs[255], max(errs), np.abs(fin - S).max(), np.abs(S).max()))
