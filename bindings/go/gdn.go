// Package gdn is the Go binding of libgdn, Gated DeltaNet kernels behind a C ABI.
//
// Handles (Context, Layer, Buffer) are released with an explicit Close; there are no finalizers.
// Tensor data lives in C memory (Buffer, or device pointers from elsewhere via DeviceTensor), so
// no Go pointer ever reaches C. Failures come back as *Error with the library's status and message.
package gdn

/*
#cgo pkg-config: gdn
#include <stdlib.h>
#include <stdint.h>
#include <gdn.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// PadSlot marks a batch row to skip.
const PadSlot = C.GDN_PAD_SLOT

// Status is a gdn_status code.
type Status int

const (
	Success            Status = C.GDN_SUCCESS
	InvalidArgument    Status = C.GDN_ERROR_INVALID_ARGUMENT
	NullPointer        Status = C.GDN_ERROR_NULL_POINTER
	BadDType           Status = C.GDN_ERROR_BAD_DTYPE
	BadShape           Status = C.GDN_ERROR_BAD_SHAPE
	BadStride          Status = C.GDN_ERROR_BAD_STRIDE
	Misaligned         Status = C.GDN_ERROR_MISALIGNED
	Aliasing           Status = C.GDN_ERROR_ALIASING
	WorkspaceTooSmall  Status = C.GDN_ERROR_WORKSPACE_TOO_SMALL
	SizeOverflow       Status = C.GDN_ERROR_SIZE_OVERFLOW
	Unsupported        Status = C.GDN_ERROR_UNSUPPORTED
	BackendUnavailable Status = C.GDN_ERROR_BACKEND_UNAVAILABLE
	BadVersion         Status = C.GDN_ERROR_BAD_VERSION
	DeviceError        Status = C.GDN_ERROR_DEVICE
	OutOfMemory        Status = C.GDN_ERROR_OUT_OF_MEMORY
	Internal           Status = C.GDN_ERROR_INTERNAL
)

func (s Status) String() string { return C.GoString(C.gdn_status_string(C.gdn_status(s))) }

// Error is a failed libgdn call.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Status, e.Message) }

func check(st C.gdn_status) error {
	if st == C.GDN_SUCCESS {
		return nil
	}
	return &Error{Status: Status(st), Message: C.GoString(C.gdn_last_error_message())}
}

// Version returns the loaded library's version.
func Version() (major, minor, patch int) {
	var a, b, c C.int
	C.gdn_version(&a, &b, &c)
	return int(a), int(b), int(c)
}

// DType is a gdn_dtype.
type DType int

const (
	F32        DType = C.GDN_DTYPE_F32
	F16        DType = C.GDN_DTYPE_F16
	BF16       DType = C.GDN_DTYPE_BF16
	F8E4M3FN   DType = C.GDN_DTYPE_F8_E4M3FN
	F8E4M3FNUZ DType = C.GDN_DTYPE_F8_E4M3FNUZ
	I32        DType = C.GDN_DTYPE_I32
	I64        DType = C.GDN_DTYPE_I64
	Bool       DType = C.GDN_DTYPE_BOOL
)

// Size is the element size in bytes (0 for an unknown dtype).
func (d DType) Size() int { return int(C.gdn_dtype_size(C.gdn_dtype(d))) }

// Backend selects where a Context runs.
type Backend int

const (
	Auto Backend = C.GDN_BACKEND_AUTO
	CPU  Backend = C.GDN_BACKEND_CPU
	CUDA Backend = C.GDN_BACKEND_CUDA
	HIP  Backend = C.GDN_BACKEND_HIP
)

// Context is a backend and device. Calls on one Context must not overlap in time.
type Context struct{ h C.gdn_context }

// NewContext creates a context; threads = 0 picks the CPU backend's default.
func NewContext(backend Backend, device, threads int) (*Context, error) {
	var cfg C.gdn_context_config
	C.gdn_context_config_init(&cfg)
	cfg.backend = C.int32_t(backend)
	cfg.device = C.int32_t(device)
	cfg.num_threads = C.int32_t(threads)
	var h C.gdn_context
	if err := check(C.gdn_context_create(&cfg, &h)); err != nil {
		return nil, err
	}
	return &Context{h: h}, nil
}

// Backend reports the backend the context runs on.
func (c *Context) Backend() Backend {
	var b C.gdn_backend
	C.gdn_context_backend(c.h, &b)
	return Backend(b)
}

// Close releases the context; Close layers made from it first.
func (c *Context) Close() error {
	if c == nil || c.h == nil {
		return nil
	}
	err := check(C.gdn_context_destroy(c.h))
	c.h = nil
	return err
}

// LayerConfig mirrors gdn_layer_config. DefaultLayerConfig gives Qwen3-Next's values.
type LayerConfig struct {
	NumKHeads, NumVHeads, HeadKDim, HeadVDim, ConvWidth int
	ConvSiLU                                            bool
	ActDType, StateDType, OutDType, FP8DType            DType
	FP8GroupSize                                        int
	GroupedLayout, QKL2Norm                             bool
	Scale, NormEps                                      float32
	// BF16Prefill: prefill products on bf16 operands (GDN_PRECISION_BF16, FLA's accuracy).
	BF16Prefill bool
}

// DefaultLayerConfig returns the library's defaults (Qwen3-Next-80B-A3B).
func DefaultLayerConfig() LayerConfig {
	var c C.gdn_layer_config
	C.gdn_layer_config_init(&c)
	return LayerConfig{
		NumKHeads: int(c.num_k_heads), NumVHeads: int(c.num_v_heads), HeadKDim: int(c.head_k_dim),
		HeadVDim: int(c.head_v_dim), ConvWidth: int(c.conv_width), ConvSiLU: c.conv_activation == C.GDN_ACTIVATION_SILU,
		ActDType: DType(c.act_dtype), StateDType: DType(c.state_dtype), OutDType: DType(c.out_dtype),
		FP8DType: DType(c.fp8_dtype), FP8GroupSize: int(c.fp8_group_size),
		GroupedLayout: c.input_layout == C.GDN_LAYOUT_GROUPED, QKL2Norm: c.use_qk_l2norm != 0,
		Scale: float32(c.scale), NormEps: float32(c.norm_eps),
		BF16Prefill: c.prefill_precision == C.GDN_PRECISION_BF16,
	}
}

func b2i(b bool) C.int32_t {
	if b {
		return 1
	}
	return 0
}

// Layer is an immutable layer description bound to a Context.
type Layer struct {
	h   C.gdn_layer
	ctx *Context
	ws  unsafe.Pointer // host workspace (CPU backend), C memory
	wsN C.size_t
}

// NewLayer creates a layer.
func NewLayer(ctx *Context, cfg LayerConfig) (*Layer, error) {
	var c C.gdn_layer_config
	C.gdn_layer_config_init(&c)
	c.num_k_heads, c.num_v_heads = C.int32_t(cfg.NumKHeads), C.int32_t(cfg.NumVHeads)
	c.head_k_dim, c.head_v_dim, c.conv_width = C.int32_t(cfg.HeadKDim), C.int32_t(cfg.HeadVDim), C.int32_t(cfg.ConvWidth)
	c.conv_activation = C.GDN_ACTIVATION_NONE
	if cfg.ConvSiLU {
		c.conv_activation = C.GDN_ACTIVATION_SILU
	}
	c.act_dtype, c.state_dtype = C.int32_t(cfg.ActDType), C.int32_t(cfg.StateDType)
	c.out_dtype, c.fp8_dtype = C.int32_t(cfg.OutDType), C.int32_t(cfg.FP8DType)
	c.fp8_group_size = C.int32_t(cfg.FP8GroupSize)
	c.input_layout = C.GDN_LAYOUT_PLAIN
	if cfg.GroupedLayout {
		c.input_layout = C.GDN_LAYOUT_GROUPED
	}
	c.use_qk_l2norm = b2i(cfg.QKL2Norm)
	c.scale, c.norm_eps = C.float(cfg.Scale), C.float(cfg.NormEps)
	c.prefill_precision = C.GDN_PRECISION_FP32
	if cfg.BF16Prefill {
		c.prefill_precision = C.GDN_PRECISION_BF16
	}
	var h C.gdn_layer
	if err := check(C.gdn_layer_create(ctx.h, &c, &h)); err != nil {
		return nil, err
	}
	return &Layer{h: h, ctx: ctx}, nil
}

// Close releases the layer and its host workspace.
func (l *Layer) Close() error {
	if l == nil || l.h == nil {
		return nil
	}
	err := check(C.gdn_layer_destroy(l.h))
	l.h = nil
	C.free(l.ws)
	l.ws, l.wsN = nil, 0
	return err
}

// ConvDim is 2*HK*K + HV*V.
func (l *Layer) ConvDim() int64 {
	var n C.int64_t
	C.gdn_layer_conv_dim(l.h, &n)
	return int64(n)
}

// workspace returns a host workspace of at least n bytes (CPU backend); GPU backends need none today.
func (l *Layer) workspace(n C.size_t) (unsafe.Pointer, C.size_t, error) {
	if n == 0 {
		return nil, 0, nil
	}
	if l.ctx.Backend() != CPU {
		return nil, 0, &Error{Status: WorkspaceTooSmall, Message: "device workspaces are not managed by the Go binding"}
	}
	if l.wsN < n {
		C.free(l.ws)
		l.ws = C.malloc(n)
		if l.ws == nil {
			l.wsN = 0
			return nil, 0, &Error{Status: OutOfMemory, Message: "workspace allocation failed"}
		}
		l.wsN = n
	}
	return l.ws, l.wsN, nil
}
