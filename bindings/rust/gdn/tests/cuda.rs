//! The safe API on the CUDA backend with device memory: decode on the GPU equals decode on the
//! CPU. Built with `--features cuda-tests` (links libcudart) and run on the GPU machine.
#![cfg(feature = "cuda-tests")]
use gdn::*;
use std::os::raw::{c_int, c_void};

#[link(name = "cudart")]
extern "C" {
    fn cudaMalloc(ptr: *mut *mut c_void, bytes: usize) -> c_int;
    fn cudaFree(ptr: *mut c_void) -> c_int;
    fn cudaMemcpy(dst: *mut c_void, src: *const c_void, bytes: usize, kind: c_int) -> c_int;
    fn cudaDeviceSynchronize() -> c_int;
}

struct DeviceVec {
    ptr: *mut c_void,
    bytes: usize,
}

impl DeviceVec {
    fn from<T: Copy>(host: &[T]) -> Self {
        let bytes = std::mem::size_of_val(host);
        let mut ptr = std::ptr::null_mut();
        unsafe {
            assert_eq!(cudaMalloc(&mut ptr, bytes.max(1)), 0);
            assert_eq!(cudaMemcpy(ptr, host.as_ptr() as *const c_void, bytes, 1), 0);
        }
        Self { ptr, bytes }
    }
    fn to_host<T: Copy + Default>(&self) -> Vec<T> {
        let mut v = vec![T::default(); self.bytes / std::mem::size_of::<T>()];
        unsafe { assert_eq!(cudaMemcpy(v.as_mut_ptr() as *mut c_void, self.ptr, self.bytes, 2), 0) };
        v
    }
    fn view(&self, dtype: DType, shape: &[i64]) -> TensorRef<'_> {
        unsafe { TensorRef::from_raw(self.ptr, dtype, shape, None).unwrap() }
    }
    fn view_mut(&self, dtype: DType, shape: &[i64]) -> TensorMut<'_> {
        unsafe { TensorMut::from_raw(self.ptr, dtype, shape, None).unwrap() }
    }
}

impl Drop for DeviceVec {
    fn drop(&mut self) {
        unsafe { cudaFree(self.ptr) };
    }
}

fn fill(n: usize, seed: i64, mul: f32) -> Vec<f32> {
    (0..n).map(|i| ((((i as i64 + seed) * 7919) % 2001) - 1000) as f32 / 1024.0 * mul).collect()
}

#[test]
fn cuda_decode_equals_cpu_decode() {
    let gpu = Context::new(Backend::Cuda, 0, 0).expect("CUDA context");
    let cpu = Context::cpu().unwrap();
    let mut cfg = default_layer_config();
    cfg.act_dtype = DType::F32 as i32;
    cfg.out_dtype = DType::F32 as i32;
    let (b, hk, hv, k, v) = (3i64, 16i64, 32i64, 128i64, 128i64);
    let (sq, sv, sg) = ([b, 1, hk, k], [b, 1, hv, v], [b, 1, hv]);
    let n = |s: &[i64]| s.iter().product::<i64>() as usize;
    let (q, kk, vv) = (fill(n(&sq), 1, 1.0), fill(n(&sq), 2, 1.0), fill(n(&sv), 3, 1.0));
    let (a, bb) = (fill(n(&sg), 4, 1.0), fill(n(&sg), 5, 1.0));
    let (alog, dtb) = (fill(hv as usize, 6, 1.0), fill(hv as usize, 7, 1.0));
    let pool = [b + 1, hv, k, v];
    let state0 = fill(n(&pool), 8, 0.1);
    let slots = [3i32, -1, 0];

    let mut cpu_layer = Layer::new(&cpu, &cfg).unwrap();
    let mut s_cpu = state0.clone();
    let mut o_cpu = vec![0.0f32; n(&sv)];
    cpu_layer
        .decode(
            DecodeArgs {
                q: TensorRef::new(&q, &sq).unwrap(),
                k: TensorRef::new(&kk, &sq).unwrap(),
                v: TensorRef::new(&vv, &sv).unwrap(),
                gate: Gate::Raw {
                    a: TensorRef::new(&a, &sg).unwrap(),
                    b: TensorRef::new(&bb, &sg).unwrap(),
                    a_log: TensorRef::new(&alog, &[hv]).unwrap(),
                    dt_bias: TensorRef::new(&dtb, &[hv]).unwrap(),
                },
                state: TensorMut::new(&mut s_cpu, &pool).unwrap(),
                slot_idx: TensorRef::new(&slots, &[b]).unwrap(),
                num_accepted: None,
                out: TensorMut::new(&mut o_cpu, &sv).unwrap(),
            },
            Stream::default(),
        )
        .unwrap();

    let mut gpu_layer = Layer::new(&gpu, &cfg).unwrap();
    let d = |x: &[f32]| DeviceVec::from(x);
    let (dq, dk, dv, da, db, dl, dd) = (d(&q), d(&kk), d(&vv), d(&a), d(&bb), d(&alog), d(&dtb));
    let ds = d(&state0);
    let dslots = DeviceVec::from(&slots[..]);
    let dout = d(&vec![f32::NAN; n(&sv)]);
    gpu_layer
        .decode(
            DecodeArgs {
                q: dq.view(DType::F32, &sq),
                k: dk.view(DType::F32, &sq),
                v: dv.view(DType::F32, &sv),
                gate: Gate::Raw {
                    a: da.view(DType::F32, &sg),
                    b: db.view(DType::F32, &sg),
                    a_log: dl.view(DType::F32, &[hv]),
                    dt_bias: dd.view(DType::F32, &[hv]),
                },
                state: ds.view_mut(DType::F32, &pool),
                slot_idx: dslots.view(DType::I32, &[b]),
                num_accepted: None,
                out: dout.view_mut(DType::F32, &sv),
            },
            Stream::default(),
        )
        .unwrap();
    assert_eq!(unsafe { cudaDeviceSynchronize() }, 0);
    let (o_gpu, s_gpu): (Vec<f32>, Vec<f32>) = (dout.to_host(), ds.to_host());
    for (x, y) in o_gpu.iter().zip(&o_cpu) {
        assert!((x - y).abs() <= 1e-4 + 1e-4 * y.abs(), "out {} vs {}", x, y);
    }
    for (x, y) in s_gpu.iter().zip(&s_cpu) {
        assert!((x - y).abs() <= 1e-5 + 1e-5 * y.abs(), "state {} vs {}", x, y);
    }
}
