use gdn::*;

fn fill(n: usize, seed: i64, mul: f32) -> Vec<f32> {
    (0..n).map(|i| ((((i as i64 + seed) * 7919) % 2001) - 1000) as f32 / 1024.0 * mul).collect()
}

fn small_config() -> LayerConfig {
    let mut c = default_layer_config();
    c.num_k_heads = 1;
    c.num_v_heads = 2;
    c.head_k_dim = 8;
    c.head_v_dim = 4;
    c.act_dtype = DType::F32 as i32;
    c.out_dtype = DType::F32 as i32;
    c.fp8_group_size = 8;
    c
}

// float64 reference of one head and token.
fn reference(s: &mut [f64], k_dim: usize, v_dim: usize, q: &[f32], k: &[f32], v: &[f32], g: f64, beta: f64) -> Vec<f64> {
    let norm = |x: &[f32]| {
        let ss: f64 = x.iter().map(|&e| (e as f64) * (e as f64)).sum();
        x.iter().map(|&e| e as f64 / (ss + 1e-6).sqrt()).collect::<Vec<f64>>()
    };
    let (q, k) = (norm(q), norm(k));
    s.iter_mut().for_each(|e| *e *= g.exp());
    let mut o = vec![0.0; v_dim];
    let u: Vec<f64> = (0..v_dim)
        .map(|j| beta * (v[j] as f64 - (0..k_dim).map(|i| s[i * v_dim + j] * k[i]).sum::<f64>()))
        .collect();
    for j in 0..v_dim {
        for i in 0..k_dim {
            s[i * v_dim + j] += k[i] * u[j];
            o[j] += s[i * v_dim + j] * q[i] / (k_dim as f64).sqrt();
        }
    }
    o
}

#[test]
fn decode_matches_reference_and_pads() {
    let ctx = Context::new(Backend::Cpu, 0, 2).unwrap();
    let mut layer = Layer::new(&ctx, &small_config()).unwrap();
    let (q, k, v) = (fill(2 * 8, 1, 1.0), fill(2 * 8, 2, 1.0), fill(2 * 2 * 4, 3, 1.0));
    let g = vec![-0.1f32, -0.5, -0.2, -0.7];
    let beta = vec![0.3f32, 0.6, 0.9, 0.1];
    let mut state = fill(2 * 2 * 8 * 4, 4, 0.5);
    let mut expect_state: Vec<f64> = state.iter().map(|&x| x as f64).collect();
    let mut out = vec![f32::NAN; 2 * 2 * 4];
    let slots = vec![1i32, -1];
    layer
        .decode(
            DecodeArgs {
                q: TensorRef::new(&q, &[2, 1, 1, 8]).unwrap(),
                k: TensorRef::new(&k, &[2, 1, 1, 8]).unwrap(),
                v: TensorRef::new(&v, &[2, 1, 2, 4]).unwrap(),
                gate: Gate::Precomputed { g: TensorRef::new(&g, &[2, 1, 2]).unwrap(), beta: TensorRef::new(&beta, &[2, 1, 2]).unwrap() },
                state: TensorMut::new(&mut state, &[2, 2, 8, 4]).unwrap(),
                slot_idx: TensorRef::new(&slots, &[2]).unwrap(),
                num_accepted: None,
                out: TensorMut::new(&mut out, &[2, 1, 2, 4]).unwrap(),
            },
            Stream::default(),
        )
        .unwrap();
    for h in 0..2 {
        let s = &mut expect_state[(2 + h) * 32..(3 + h) * 32];
        let o = reference(s, 8, 4, &q[..8], &k[..8], &v[h * 4..h * 4 + 4], g[h] as f64, beta[h] as f64);
        for j in 0..4 {
            assert!((out[h * 4 + j] as f64 - o[j]).abs() < 1e-4, "out {} {}", out[h * 4 + j], o[j]);
        }
    }
    assert!(out[8..].iter().all(|&x| x == 0.0), "PAD row is zero");
    for (a, b) in state.iter().zip(&expect_state) {
        assert!((*a as f64 - b).abs() < 1e-4);
    }
}

#[test]
fn errors_carry_status_and_message() {
    let ctx = Context::cpu().unwrap();
    let mut bad = default_layer_config();
    bad.num_k_heads = 3;
    let err = Layer::new(&ctx, &bad).err().unwrap();
    assert_eq!(err.status, sys::GDN_ERROR_INVALID_ARGUMENT as i32);
    assert!(err.to_string().contains("num_v_heads"));
    let mut layer = Layer::new(&ctx, &small_config()).unwrap();
    let x = vec![0.0f32; 16];
    let mut out = vec![7.0f32; 16];
    let mut state = vec![0.0f32; 64];
    let slots = vec![0i32];
    let err = layer
        .decode(
            DecodeArgs {
                q: TensorRef::new(&x, &[1, 1, 2, 8]).unwrap(), // two key heads: wrong
                k: TensorRef::new(&x, &[1, 1, 1, 8]).unwrap(),
                v: TensorRef::new(&x, &[1, 1, 2, 4]).unwrap(),
                gate: Gate::Precomputed { g: TensorRef::new(&x, &[1, 1, 2]).unwrap(), beta: TensorRef::new(&x, &[1, 1, 2]).unwrap() },
                state: TensorMut::new(&mut state, &[1, 2, 8, 4]).unwrap(),
                slot_idx: TensorRef::new(&slots, &[1]).unwrap(),
                num_accepted: None,
                out: TensorMut::new(&mut out, &[1, 1, 2, 4]).unwrap(),
            },
            Stream::default(),
        )
        .unwrap_err();
    assert_eq!(err.status, sys::GDN_ERROR_BAD_SHAPE as i32);
    assert!(err.message.contains("q"));
    assert!(out.iter().all(|&x| x == 7.0), "outputs untouched on error");
    // Views are checked against their slices before any call.
    assert!(TensorRef::new(&x, &[4, 8]).is_err());
    assert_eq!(version().0, 0);
}
