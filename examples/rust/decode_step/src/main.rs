//! The cross-language synthetic decode step (Rust version; see examples/decode_step.c for the spec).
use gdn::*;

fn fill(n: usize, seed: i64, mul: f32) -> Vec<f32> {
    (0..n).map(|i| ((((i as i64 + seed) * 7919) % 2001) - 1000) as f32 / 1024.0 * mul).collect()
}

fn main() -> Result<()> {
    const HK: i64 = 2;
    const HV: i64 = 4;
    const K: i64 = 32;
    const V: i64 = 32;
    const B: i64 = 2;
    const SLOTS: i64 = 3;
    let ctx = Context::cpu()?;
    let mut cfg = default_layer_config();
    cfg.num_k_heads = HK as i32;
    cfg.num_v_heads = HV as i32;
    cfg.head_k_dim = K as i32;
    cfg.head_v_dim = V as i32;
    cfg.act_dtype = DType::F32 as i32;
    cfg.out_dtype = DType::F32 as i32;
    let mut layer = Layer::new(&ctx, &cfg)?;
    let n = |s: &[i64]| s.iter().product::<i64>() as usize;
    let (sq, sv, sg) = ([B, 1, HK, K], [B, 1, HV, V], [B, 1, HV]);
    let (q, k, v) = (fill(n(&sq), 1, 1.0), fill(n(&sq), 2, 1.0), fill(n(&sv), 3, 1.0));
    let (a, b) = (fill(n(&sg), 4, 1.0), fill(n(&sg), 5, 1.0));
    let (a_log, dt_bias) = (fill(HV as usize, 6, 1.0), fill(HV as usize, 7, 1.0));
    let mut state = fill(n(&[SLOTS, HV, K, V]), 8, 0.5);
    let mut out = vec![0.0f32; n(&sv)];
    let slots = [2i32, 0];
    layer.decode(
        DecodeArgs {
            q: TensorRef::new(&q, &sq)?,
            k: TensorRef::new(&k, &sq)?,
            v: TensorRef::new(&v, &sv)?,
            gate: Gate::Raw {
                a: TensorRef::new(&a, &sg)?,
                b: TensorRef::new(&b, &sg)?,
                a_log: TensorRef::new(&a_log, &[HV])?,
                dt_bias: TensorRef::new(&dt_bias, &[HV])?,
            },
            state: TensorMut::new(&mut state, &[SLOTS, HV, K, V])?,
            slot_idx: TensorRef::new(&slots, &[B])?,
            num_accepted: None,
            out: TensorMut::new(&mut out, &sv)?,
        },
        Stream::default(),
    )?;
    let out_sum: f64 = out.iter().fold(0.0, |s, &x| s + x as f64);
    let state_sum: f64 = state.iter().fold(0.0, |s, &x| s + x as f64);
    println!("out_sum={} state_sum={}", sci(out_sum), sci(state_sum));
    Ok(())
}

// C's "%.9e".
fn sci(x: f64) -> String {
    let s = format!("{:.9e}", x);
    let (mant, exp) = s.split_once('e').unwrap();
    let e: i32 = exp.parse().unwrap();
    format!("{}e{}{:02}", mant, if e < 0 { '-' } else { '+' }, e.abs())
}
