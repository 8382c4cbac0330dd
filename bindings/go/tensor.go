package gdn

/*
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <gdn.h>
static void gdn_go_set_ptr(gdn_tensor* t, uintptr_t p) { t->data = (void*)p; }
*/
import "C"

import (
	"errors"
	"unsafe"
)

// Tensor is a view: address, dtype, shape and strides in elements. The zero Tensor is "absent".
type Tensor struct {
	addr    uintptr
	DType   DType
	Shape   []int64
	Strides []int64
}

func contiguous(shape []int64) []int64 {
	strides := make([]int64, len(shape))
	s := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		strides[i] = s
		s *= shape[i]
	}
	return strides
}

// DeviceTensor views memory that Go does not own (a CUDA/HIP device pointer, say).
func DeviceTensor(addr uintptr, dtype DType, shape, strides []int64) Tensor {
	if strides == nil {
		strides = contiguous(shape)
	}
	return Tensor{addr: addr, DType: dtype, Shape: shape, Strides: strides}
}

// Reshape returns the same memory with another shape (contiguous strides).
func (t Tensor) Reshape(shape ...int64) Tensor { return DeviceTensor(t.addr, t.DType, shape, nil) }

func (t *Tensor) c() C.gdn_tensor {
	var out C.gdn_tensor
	if t == nil || (t.addr == 0 && len(t.Shape) == 0) {
		return out
	}
	C.gdn_go_set_ptr(&out, C.uintptr_t(t.addr))
	out.dtype = C.int32_t(t.DType)
	out.ndim = C.int32_t(len(t.Shape))
	for i := range t.Shape {
		if i >= C.GDN_MAX_DIMS {
			out.ndim = C.GDN_MAX_DIMS + 1 // the library reports the bad rank
			break
		}
		out.shape[i] = C.int64_t(t.Shape[i])
		out.strides[i] = C.int64_t(t.Strides[i])
	}
	return out
}

// Buffer is host memory allocated in C (so it may be handed to the library), zero-filled.
type Buffer struct {
	ptr   unsafe.Pointer
	bytes int
	dtype DType
	shape []int64
}

// NewBuffer allocates a contiguous host tensor.
func NewBuffer(dtype DType, shape ...int64) (*Buffer, error) {
	n := int64(1)
	for _, s := range shape {
		if s < 0 {
			return nil, errors.New("gdn: negative size")
		}
		n *= s
	}
	size := int(n) * dtype.Size()
	if dtype.Size() == 0 {
		return nil, errors.New("gdn: unknown dtype")
	}
	p := C.calloc(C.size_t(size+1), 1)
	if p == nil {
		return nil, errors.New("gdn: out of memory")
	}
	return &Buffer{ptr: p, bytes: size, dtype: dtype, shape: shape}, nil
}

// Tensor is a contiguous view of the whole buffer.
func (b *Buffer) Tensor() Tensor {
	return Tensor{addr: uintptr(b.ptr), DType: b.dtype, Shape: b.shape, Strides: contiguous(b.shape)}
}

// Bytes is the buffer's memory as a Go slice (valid until Close).
func (b *Buffer) Bytes() []byte { return unsafe.Slice((*byte)(b.ptr), b.bytes) }

// Float32s views an F32 buffer.
func (b *Buffer) Float32s() []float32 { return unsafe.Slice((*float32)(b.ptr), b.bytes/4) }

// Uint16s views a 2-byte buffer (BF16 / F16 bits).
func (b *Buffer) Uint16s() []uint16 { return unsafe.Slice((*uint16)(b.ptr), b.bytes/2) }

// Int32s views an I32 buffer.
func (b *Buffer) Int32s() []int32 { return unsafe.Slice((*int32)(b.ptr), b.bytes/4) }

// Close frees the buffer.
func (b *Buffer) Close() {
	if b != nil && b.ptr != nil {
		C.free(b.ptr)
		b.ptr = nil
	}
}
