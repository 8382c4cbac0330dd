//! Safe Rust API of libgdn.
//!
//! * [`Context`] and [`Layer`] are RAII handles. A `Context` is `Send` but not `Sync`: run calls on
//!   one context must not overlap (the CPU backend owns one thread pool per context), and layers
//!   borrow their context, so the borrow checker keeps them on one thread together.
//! * Tensors are typed views over slices ([`TensorRef`], [`TensorMut`]); device memory can be
//!   wrapped with the `unsafe` raw constructors.
//! * Every failure is an [`Error`] carrying the library's status and message.
use std::ffi::CStr;
use std::marker::PhantomData;
use std::os::raw::c_void;

pub use gdn_sys as sys;

/// A failed libgdn call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: i32,
    pub message: String,
}

impl Error {
    /// The status's name, e.g. "GDN_ERROR_BAD_SHAPE: ...".
    pub fn status_string(&self) -> String {
        unsafe { CStr::from_ptr(sys::gdn_status_string(self.status as sys::gdn_status)) }
            .to_string_lossy()
            .into_owned()
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status_string(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn check(status: sys::gdn_status) -> Result<()> {
    if status == sys::GDN_SUCCESS {
        return Ok(());
    }
    let message = unsafe { CStr::from_ptr(sys::gdn_last_error_message()) }.to_string_lossy().into_owned();
    Err(Error { status: status as i32, message })
}

/// (major, minor, patch) of the loaded library.
pub fn version() -> (i32, i32, i32) {
    let (mut a, mut b, mut c) = (0, 0, 0);
    unsafe { sys::gdn_version(&mut a, &mut b, &mut c) };
    (a, b, c)
}

/// Element dtypes (gdn_dtype).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum DType {
    F32 = sys::GDN_DTYPE_F32 as i32,
    F16 = sys::GDN_DTYPE_F16 as i32,
    BF16 = sys::GDN_DTYPE_BF16 as i32,
    F8E4M3FN = sys::GDN_DTYPE_F8_E4M3FN as i32,
    F8E4M3FNUZ = sys::GDN_DTYPE_F8_E4M3FNUZ as i32,
    I32 = sys::GDN_DTYPE_I32 as i32,
    I64 = sys::GDN_DTYPE_I64 as i32,
    Bool = sys::GDN_DTYPE_BOOL as i32,
}

/// bf16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct Bf16(pub u16);
/// IEEE half bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct F16(pub u16);
/// FP8 e4m3fn code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct F8E4M3FN(pub u8);
/// FP8 e4m3fnuz code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct F8E4M3FNUZ(pub u8);

/// Types a tensor view can be made of.
pub trait Element: Copy {
    const DTYPE: DType;
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for Bf16 {
    const DTYPE: DType = DType::BF16;
}
impl Element for F16 {
    const DTYPE: DType = DType::F16;
}
impl Element for F8E4M3FN {
    const DTYPE: DType = DType::F8E4M3FN;
}
impl Element for F8E4M3FNUZ {
    const DTYPE: DType = DType::F8E4M3FNUZ;
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;
}
impl Element for i64 {
    const DTYPE: DType = DType::I64;
}
impl Element for bool {
    const DTYPE: DType = DType::Bool;
}

fn raw_view(ptr: *mut c_void, dtype: DType, shape: &[i64], strides: Option<&[i64]>) -> Result<sys::gdn_tensor> {
    let max = sys::GDN_MAX_DIMS as usize;
    if shape.len() > max || strides.map_or(false, |s| s.len() != shape.len()) {
        return Err(Error { status: sys::GDN_ERROR_BAD_SHAPE as i32, message: format!("at most {} dims, strides matching shape", max) });
    }
    let mut t: sys::gdn_tensor = unsafe { std::mem::zeroed() };
    t.data = ptr;
    t.dtype = dtype as i32;
    t.ndim = shape.len() as i32;
    let mut s = 1i64;
    for i in (0..shape.len()).rev() {
        t.shape[i] = shape[i];
        t.strides[i] = strides.map_or(s, |st| st[i]);
        s = s.saturating_mul(shape[i].max(0));
    }
    Ok(t)
}

// Highest element offset + 1 a view reaches (0 when empty); None on negative sizes/strides.
fn extent(shape: &[i64], strides: &[i64]) -> Option<usize> {
    let mut last = 0i64;
    for (&n, &s) in shape.iter().zip(strides) {
        if n < 0 || s < 0 {
            return None;
        }
        if n == 0 {
            return Some(0);
        }
        last = last.checked_add((n - 1).checked_mul(s)?)?;
    }
    usize::try_from(last).ok().map(|l| l + 1)
}

fn slice_view<T: Element>(ptr: *mut T, len: usize, shape: &[i64], strides: Option<&[i64]>) -> Result<sys::gdn_tensor> {
    let t = raw_view(ptr as *mut c_void, T::DTYPE, shape, strides)?;
    let n = t.ndim as usize;
    match extent(&t.shape[..n], &t.strides[..n]) {
        Some(e) if e <= len => Ok(t),
        _ => Err(Error { status: sys::GDN_ERROR_BAD_SHAPE as i32, message: format!("view {:?} does not fit a slice of {} elements", shape, len) }),
    }
}

/// A read-only tensor view.
#[derive(Clone, Copy)]
pub struct TensorRef<'a> {
    raw: sys::gdn_tensor,
    _p: PhantomData<&'a ()>,
}

/// A writable tensor view.
pub struct TensorMut<'a> {
    raw: sys::gdn_tensor,
    _p: PhantomData<&'a mut ()>,
}

impl<'a> TensorRef<'a> {
    /// Contiguous view of `data` with `shape`.
    pub fn new<T: Element>(data: &'a [T], shape: &[i64]) -> Result<Self> {
        Ok(Self { raw: slice_view(data.as_ptr() as *mut T, data.len(), shape, None)?, _p: PhantomData })
    }
    /// Strided view (strides in elements); must stay inside `data`.
    pub fn strided<T: Element>(data: &'a [T], shape: &[i64], strides: &[i64]) -> Result<Self> {
        Ok(Self { raw: slice_view(data.as_ptr() as *mut T, data.len(), shape, Some(strides))?, _p: PhantomData })
    }
    /// A view of memory Rust does not own (e.g. a CUDA device pointer).
    ///
    /// # Safety
    /// `ptr` must address memory valid for the view on the context's device for `'a`.
    pub unsafe fn from_raw(ptr: *const c_void, dtype: DType, shape: &[i64], strides: Option<&[i64]>) -> Result<Self> {
        Ok(Self { raw: raw_view(ptr as *mut c_void, dtype, shape, strides)?, _p: PhantomData })
    }
}

impl<'a> TensorMut<'a> {
    pub fn new<T: Element>(data: &'a mut [T], shape: &[i64]) -> Result<Self> {
        Ok(Self { raw: slice_view(data.as_mut_ptr(), data.len(), shape, None)?, _p: PhantomData })
    }
    pub fn strided<T: Element>(data: &'a mut [T], shape: &[i64], strides: &[i64]) -> Result<Self> {
        Ok(Self { raw: slice_view(data.as_mut_ptr(), data.len(), shape, Some(strides))?, _p: PhantomData })
    }
    /// # Safety
    /// `ptr` must address writable memory valid for the view on the context's device for `'a`.
    pub unsafe fn from_raw(ptr: *mut c_void, dtype: DType, shape: &[i64], strides: Option<&[i64]>) -> Result<Self> {
        Ok(Self { raw: raw_view(ptr, dtype, shape, strides)?, _p: PhantomData })
    }
}

fn opt(t: &Option<TensorRef<'_>>) -> sys::gdn_tensor {
    t.map_or(unsafe { std::mem::zeroed() }, |t| t.raw)
}

/// Where a context runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Auto,
    Cpu,
    Cuda,
    Hip,
}

/// A backend + device. `Send`, not `Sync`.
pub struct Context {
    raw: sys::gdn_context,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// The C API allows using a context from any thread, one call at a time.
unsafe impl Send for Context {}

impl Context {
    pub fn new(backend: Backend, device: i32, num_threads: i32) -> Result<Self> {
        let mut cfg: sys::gdn_context_config = unsafe { std::mem::zeroed() };
        unsafe { sys::gdn_context_config_init(&mut cfg) };
        cfg.backend = match backend {
            Backend::Auto => sys::GDN_BACKEND_AUTO,
            Backend::Cpu => sys::GDN_BACKEND_CPU,
            Backend::Cuda => sys::GDN_BACKEND_CUDA,
            Backend::Hip => sys::GDN_BACKEND_HIP,
        } as i32;
        cfg.device = device;
        cfg.num_threads = num_threads;
        let mut raw = std::ptr::null_mut();
        check(unsafe { sys::gdn_context_create(&cfg, &mut raw) })?;
        Ok(Self { raw, _not_sync: PhantomData })
    }
    /// The CPU backend with the default thread count.
    pub fn cpu() -> Result<Self> {
        Self::new(Backend::Cpu, 0, 0)
    }
    pub fn backend(&self) -> Backend {
        let mut b = sys::GDN_BACKEND_CPU;
        unsafe { sys::gdn_context_backend(self.raw, &mut b) };
        match b {
            sys::GDN_BACKEND_CUDA => Backend::Cuda,
            sys::GDN_BACKEND_HIP => Backend::Hip,
            _ => Backend::Cpu,
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        unsafe { sys::gdn_context_destroy(self.raw) };
    }
}

/// gdn_layer_config with the library's defaults (Qwen3-Next); adjust the public fields.
pub type LayerConfig = sys::gdn_layer_config;

/// The library's default layer config.
pub fn default_layer_config() -> LayerConfig {
    let mut c: LayerConfig = unsafe { std::mem::zeroed() };
    unsafe { sys::gdn_layer_config_init(&mut c) };
    c
}

/// The gate: raw (a, b, A_log, dt_bias) or precomputed (g, beta).
#[derive(Clone, Copy)]
pub enum Gate<'a> {
    Raw { a: TensorRef<'a>, b: TensorRef<'a>, a_log: TensorRef<'a>, dt_bias: TensorRef<'a> },
    Precomputed { g: TensorRef<'a>, beta: TensorRef<'a> },
}

/// Arguments of [`Layer::decode`] (shapes in include/gdn.h).
pub struct DecodeArgs<'a> {
    pub q: TensorRef<'a>,
    pub k: TensorRef<'a>,
    pub v: TensorRef<'a>,
    pub gate: Gate<'a>,
    pub state: TensorMut<'a>,
    pub slot_idx: TensorRef<'a>,
    pub num_accepted: Option<TensorRef<'a>>,
    pub out: TensorMut<'a>,
}

/// Arguments of [`Layer::prefill`].
pub struct PrefillArgs<'a> {
    pub q: TensorRef<'a>,
    pub k: TensorRef<'a>,
    pub v: TensorRef<'a>,
    pub gate: Gate<'a>,
    pub state: TensorMut<'a>,
    pub cu_seqlens: TensorRef<'a>,
    pub slot_idx: TensorRef<'a>,
    pub has_initial_state: Option<TensorRef<'a>>,
    pub out: TensorMut<'a>,
}

/// Arguments of [`Layer::conv_update`].
pub struct ConvUpdateArgs<'a> {
    pub x: TensorRef<'a>,
    pub weight: TensorRef<'a>,
    pub bias: Option<TensorRef<'a>>,
    pub conv_state: TensorMut<'a>,
    pub slot_idx: TensorRef<'a>,
    pub out: TensorMut<'a>,
}

/// Arguments of [`Layer::conv_prefill`].
pub struct ConvPrefillArgs<'a> {
    pub x: TensorRef<'a>,
    pub weight: TensorRef<'a>,
    pub bias: Option<TensorRef<'a>>,
    pub conv_state: TensorMut<'a>,
    pub cu_seqlens: TensorRef<'a>,
    pub slot_idx: TensorRef<'a>,
    pub has_initial_state: Option<TensorRef<'a>>,
    pub out: TensorMut<'a>,
}

/// Arguments of [`Layer::norm_gated`] and [`Layer::norm_gated_fp8_quant`].
pub struct NormArgs<'a> {
    pub x: TensorRef<'a>,
    pub z: TensorRef<'a>,
    pub weight: TensorRef<'a>,
    pub out: TensorMut<'a>,
    /// FP8 only: [T, HV*V/group] f32.
    pub scales: Option<TensorMut<'a>>,
}

/// A CUDA/HIP stream handle (0 = default stream; ignored on the CPU).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stream(pub usize);

/// An immutable layer description, borrowing its context.
pub struct Layer<'c> {
    raw: sys::gdn_layer,
    ctx: &'c Context,
    workspace: Vec<u8>,
}

fn gate_fields(gate: &Gate<'_>) -> [sys::gdn_tensor; 6] {
    let z: sys::gdn_tensor = unsafe { std::mem::zeroed() };
    match gate {
        Gate::Raw { a, b, a_log, dt_bias } => [a.raw, b.raw, a_log.raw, dt_bias.raw, z, z],
        Gate::Precomputed { g, beta } => [z, z, z, z, g.raw, beta.raw],
    }
}

impl<'c> Layer<'c> {
    pub fn new(ctx: &'c Context, config: &LayerConfig) -> Result<Self> {
        let mut raw = std::ptr::null_mut();
        check(unsafe { sys::gdn_layer_create(ctx.raw, config, &mut raw) })?;
        Ok(Self { raw, ctx, workspace: Vec::new() })
    }

    pub fn conv_dim(&self) -> i64 {
        let mut n = 0;
        unsafe { sys::gdn_layer_conv_dim(self.raw, &mut n) };
        n
    }

    fn workspace(&mut self, need: usize) -> Result<(*mut c_void, usize)> {
        if need == 0 {
            return Ok((std::ptr::null_mut(), 0));
        }
        if self.ctx.backend() != Backend::Cpu {
            return Err(Error { status: sys::GDN_ERROR_WORKSPACE_TOO_SMALL as i32, message: format!("this call needs a {}-byte device workspace", need) });
        }
        if self.workspace.len() < need {
            self.workspace.resize(need, 0);
        }
        Ok((self.workspace.as_mut_ptr() as *mut c_void, self.workspace.len()))
    }

    pub fn decode(&mut self, args: DecodeArgs<'_>, stream: Stream) -> Result<()> {
        let [a, b, a_log, dt_bias, g, beta] = gate_fields(&args.gate);
        let mut c: sys::gdn_decode_args = unsafe { std::mem::zeroed() };
        c.struct_size = std::mem::size_of::<sys::gdn_decode_args>() as u32;
        (c.q, c.k, c.v, c.a, c.b, c.A_log, c.dt_bias, c.g, c.beta) = (args.q.raw, args.k.raw, args.v.raw, a, b, a_log, dt_bias, g, beta);
        (c.state, c.slot_idx, c.num_accepted, c.out) = (args.state.raw, args.slot_idx.raw, opt(&args.num_accepted), args.out.raw);
        let mut need = 0usize;
        let (batch, tn) = if c.q.ndim == 4 { (c.q.shape[0], c.q.shape[1]) } else { (0, 0) };
        check(unsafe { sys::gdn_decode_workspace_size(self.raw, batch, tn, &mut need) })?;
        let (ws, n) = self.workspace(need)?;
        check(unsafe { sys::gdn_decode(self.raw, &c, ws, n, stream.0 as *mut c_void) })
    }

    pub fn prefill(&mut self, args: PrefillArgs<'_>, stream: Stream) -> Result<()> {
        let [a, b, a_log, dt_bias, g, beta] = gate_fields(&args.gate);
        let mut c: sys::gdn_prefill_args = unsafe { std::mem::zeroed() };
        c.struct_size = std::mem::size_of::<sys::gdn_prefill_args>() as u32;
        (c.q, c.k, c.v, c.a, c.b, c.A_log, c.dt_bias, c.g, c.beta) = (args.q.raw, args.k.raw, args.v.raw, a, b, a_log, dt_bias, g, beta);
        (c.state, c.cu_seqlens, c.slot_idx) = (args.state.raw, args.cu_seqlens.raw, args.slot_idx.raw);
        (c.has_initial_state, c.out) = (opt(&args.has_initial_state), args.out.raw);
        let tokens = if c.q.ndim >= 1 { c.q.shape[0] } else { 0 };
        let seqs = if c.cu_seqlens.ndim == 1 { (c.cu_seqlens.shape[0] - 1).max(0) } else { 0 };
        let mut need = 0usize;
        check(unsafe { sys::gdn_prefill_workspace_size(self.raw, tokens, seqs, &mut need) })?;
        let (ws, n) = self.workspace(need)?;
        check(unsafe { sys::gdn_prefill(self.raw, &c, ws, n, stream.0 as *mut c_void) })
    }

    pub fn conv_update(&mut self, args: ConvUpdateArgs<'_>, stream: Stream) -> Result<()> {
        let mut c: sys::gdn_conv_update_args = unsafe { std::mem::zeroed() };
        c.struct_size = std::mem::size_of::<sys::gdn_conv_update_args>() as u32;
        (c.x, c.weight, c.bias, c.conv_state, c.slot_idx, c.out) =
            (args.x.raw, args.weight.raw, opt(&args.bias), args.conv_state.raw, args.slot_idx.raw, args.out.raw);
        check(unsafe { sys::gdn_conv_update(self.raw, &c, std::ptr::null_mut(), 0, stream.0 as *mut c_void) })
    }

    pub fn conv_prefill(&mut self, args: ConvPrefillArgs<'_>, stream: Stream) -> Result<()> {
        let mut c: sys::gdn_conv_prefill_args = unsafe { std::mem::zeroed() };
        c.struct_size = std::mem::size_of::<sys::gdn_conv_prefill_args>() as u32;
        (c.x, c.weight, c.bias, c.conv_state) = (args.x.raw, args.weight.raw, opt(&args.bias), args.conv_state.raw);
        (c.cu_seqlens, c.slot_idx, c.has_initial_state, c.out) =
            (args.cu_seqlens.raw, args.slot_idx.raw, opt(&args.has_initial_state), args.out.raw);
        check(unsafe { sys::gdn_conv_prefill(self.raw, &c, std::ptr::null_mut(), 0, stream.0 as *mut c_void) })
    }

    fn norm(&mut self, args: NormArgs<'_>, stream: Stream, fp8: bool) -> Result<()> {
        let mut c: sys::gdn_norm_gated_args = unsafe { std::mem::zeroed() };
        c.struct_size = std::mem::size_of::<sys::gdn_norm_gated_args>() as u32;
        (c.x, c.z, c.weight, c.out) = (args.x.raw, args.z.raw, args.weight.raw, args.out.raw);
        c.scales = args.scales.map_or(unsafe { std::mem::zeroed() }, |s| s.raw);
        let tokens = if c.x.ndim >= 1 { c.x.shape[0] } else { 0 };
        let mut need = 0usize;
        check(unsafe { sys::gdn_norm_gated_workspace_size(self.raw, tokens, &mut need) })?;
        let (ws, n) = self.workspace(need)?;
        let s = stream.0 as *mut c_void;
        check(unsafe {
            if fp8 { sys::gdn_norm_gated_fp8_quant(self.raw, &c, ws, n, s) } else { sys::gdn_norm_gated(self.raw, &c, ws, n, s) }
        })
    }

    pub fn norm_gated(&mut self, args: NormArgs<'_>, stream: Stream) -> Result<()> {
        self.norm(args, stream, false)
    }

    pub fn norm_gated_fp8_quant(&mut self, args: NormArgs<'_>, stream: Stream) -> Result<()> {
        self.norm(args, stream, true)
    }
}

impl Drop for Layer<'_> {
    fn drop(&mut self) {
        unsafe { sys::gdn_layer_destroy(self.raw) };
    }
}
