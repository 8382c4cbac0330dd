"""The cross-language synthetic decode step (Python version; see decode_step.c for the spec).
Standard library only: run with PYTHONPATH=bindings/python and GDN_LIBRARY=path/to/libgdn.so."""
import array
import ctypes

import gdn
from gdn import View, _lib as L

HK, HV, K, V, B, SLOTS = 2, 4, 32, 32, 2, 3


def tensor(shape, seed, mul=1.0, typecode="f", dtype=L.F32):
    n = 1
    for s in shape:
        n *= s
    a = array.array(typecode, [((((i + seed) * 7919) % 2001) - 1000) / 1024.0 * mul for i in range(n)] if seed else [0] * n)
    addr, _ = a.buffer_info()
    return a, View(addr, dtype, shape, owner=a)


def main():
    ctx = gdn.Context("cpu")
    layer = gdn.Layer(ctx, num_k_heads=HK, num_v_heads=HV, head_k_dim=K, head_v_dim=V, act_dtype="f32",
                      out_dtype="f32")
    _, q = tensor((B, 1, HK, K), 1)
    _, k = tensor((B, 1, HK, K), 2)
    _, v = tensor((B, 1, HV, V), 3)
    _, a = tensor((B, 1, HV), 4)
    _, b = tensor((B, 1, HV), 5)
    _, A_log = tensor((HV,), 6)
    _, dt_bias = tensor((HV,), 7)
    state_arr, state = tensor((SLOTS, HV, K, V), 8, 0.5)
    out_arr, out = tensor((B, 1, HV, V), 0)
    slots_arr = array.array("i", [2, 0])
    slots = View(slots_arr.buffer_info()[0], L.I32, (B,), owner=slots_arr)
    layer.decode(q=q, k=k, v=v, a=a, b=b, A_log=A_log, dt_bias=dt_bias, state=state, slot_idx=slots, out=out)
    out_sum = 0.0
    for x in out_arr:
        out_sum += x
    state_sum = 0.0
    for x in state_arr:
        state_sum += x
    print("out_sum=%.9e state_sum=%.9e" % (out_sum, state_sum))


if __name__ == "__main__":
    main()
