package gdn

/*
#include <stdint.h>
#include <gdn.h>
// Streams travel as integers; these turn them back into the pointer the ABI takes.
#define GDN_GO_OP(name, args) \
  static gdn_status go_##name(gdn_layer l, const args* a, void* ws, size_t n, uintptr_t s) { \
    return gdn_##name(l, a, ws, n, (void*)s); }
GDN_GO_OP(decode, gdn_decode_args)
GDN_GO_OP(prefill, gdn_prefill_args)
GDN_GO_OP(conv_update, gdn_conv_update_args)
GDN_GO_OP(conv_prefill, gdn_conv_prefill_args)
GDN_GO_OP(norm_gated, gdn_norm_gated_args)
GDN_GO_OP(norm_gated_fp8_quant, gdn_norm_gated_args)
*/
import "C"

import "unsafe"

// DecodeArgs are gdn_decode_args; nil fields are absent.
type DecodeArgs struct {
	Q, K, V, A, B, ALog, DtBias, G, Beta, State, SlotIdx, NumAccepted, Out *Tensor
}

// PrefillArgs are gdn_prefill_args.
type PrefillArgs struct {
	Q, K, V, A, B, ALog, DtBias, G, Beta, State, CuSeqlens, SlotIdx, HasInitialState, Out *Tensor
}

// ConvUpdateArgs are gdn_conv_update_args.
type ConvUpdateArgs struct{ X, Weight, Bias, ConvState, SlotIdx, Out *Tensor }

// ConvPrefillArgs are gdn_conv_prefill_args.
type ConvPrefillArgs struct {
	X, Weight, Bias, ConvState, CuSeqlens, SlotIdx, HasInitialState, Out *Tensor
}

// NormArgs are gdn_norm_gated_args (Scales only for the FP8 variant).
type NormArgs struct{ X, Z, Weight, Out, Scales *Tensor }

func dim(t *Tensor, i int) int64 {
	if t == nil || len(t.Shape) <= i {
		return 0
	}
	return t.Shape[i]
}

// Decode runs gdn_decode on `stream` (a cudaStream_t / hipStream_t as uintptr; 0 = default).
func (l *Layer) Decode(a DecodeArgs, stream uintptr) error {
	c := C.gdn_decode_args{struct_size: C.uint32_t(unsafe.Sizeof(C.gdn_decode_args{}))}
	c.q, c.k, c.v, c.a, c.b = a.Q.c(), a.K.c(), a.V.c(), a.A.c(), a.B.c()
	c.A_log, c.dt_bias, c.g, c.beta = a.ALog.c(), a.DtBias.c(), a.G.c(), a.Beta.c()
	c.state, c.slot_idx, c.num_accepted, c.out = a.State.c(), a.SlotIdx.c(), a.NumAccepted.c(), a.Out.c()
	var need C.size_t
	if err := check(C.gdn_decode_workspace_size(l.h, C.int64_t(dim(a.Q, 0)), C.int64_t(dim(a.Q, 1)), &need)); err != nil {
		return err
	}
	ws, n, err := l.workspace(need)
	if err != nil {
		return err
	}
	return check(C.go_decode(l.h, &c, ws, n, C.uintptr_t(stream)))
}

// Prefill runs gdn_prefill.
func (l *Layer) Prefill(a PrefillArgs, stream uintptr) error {
	c := C.gdn_prefill_args{struct_size: C.uint32_t(unsafe.Sizeof(C.gdn_prefill_args{}))}
	c.q, c.k, c.v, c.a, c.b = a.Q.c(), a.K.c(), a.V.c(), a.A.c(), a.B.c()
	c.A_log, c.dt_bias, c.g, c.beta = a.ALog.c(), a.DtBias.c(), a.G.c(), a.Beta.c()
	c.state, c.cu_seqlens, c.slot_idx = a.State.c(), a.CuSeqlens.c(), a.SlotIdx.c()
	c.has_initial_state, c.out = a.HasInitialState.c(), a.Out.c()
	var need C.size_t
	if err := check(C.gdn_prefill_workspace_size(l.h, C.int64_t(dim(a.Q, 0)), C.int64_t(max0(dim(a.CuSeqlens, 0)-1)), &need)); err != nil {
		return err
	}
	ws, n, err := l.workspace(need)
	if err != nil {
		return err
	}
	return check(C.go_prefill(l.h, &c, ws, n, C.uintptr_t(stream)))
}

func max0(v int64) int64 {
	if v < 0 {
		return 0
	}
	return v
}

// ConvUpdate runs gdn_conv_update.
func (l *Layer) ConvUpdate(a ConvUpdateArgs, stream uintptr) error {
	c := C.gdn_conv_update_args{struct_size: C.uint32_t(unsafe.Sizeof(C.gdn_conv_update_args{}))}
	c.x, c.weight, c.bias, c.conv_state, c.slot_idx, c.out = a.X.c(), a.Weight.c(), a.Bias.c(), a.ConvState.c(), a.SlotIdx.c(), a.Out.c()
	return check(C.go_conv_update(l.h, &c, nil, 0, C.uintptr_t(stream)))
}

// ConvPrefill runs gdn_conv_prefill.
func (l *Layer) ConvPrefill(a ConvPrefillArgs, stream uintptr) error {
	c := C.gdn_conv_prefill_args{struct_size: C.uint32_t(unsafe.Sizeof(C.gdn_conv_prefill_args{}))}
	c.x, c.weight, c.bias, c.conv_state = a.X.c(), a.Weight.c(), a.Bias.c(), a.ConvState.c()
	c.cu_seqlens, c.slot_idx, c.has_initial_state, c.out = a.CuSeqlens.c(), a.SlotIdx.c(), a.HasInitialState.c(), a.Out.c()
	return check(C.go_conv_prefill(l.h, &c, nil, 0, C.uintptr_t(stream)))
}

func (l *Layer) norm(a NormArgs, stream uintptr, fp8 bool) error {
	c := C.gdn_norm_gated_args{struct_size: C.uint32_t(unsafe.Sizeof(C.gdn_norm_gated_args{}))}
	c.x, c.z, c.weight, c.out, c.scales = a.X.c(), a.Z.c(), a.Weight.c(), a.Out.c(), a.Scales.c()
	var need C.size_t
	if err := check(C.gdn_norm_gated_workspace_size(l.h, C.int64_t(dim(a.X, 0)), &need)); err != nil {
		return err
	}
	ws, n, err := l.workspace(need)
	if err != nil {
		return err
	}
	if fp8 {
		return check(C.go_norm_gated_fp8_quant(l.h, &c, ws, n, C.uintptr_t(stream)))
	}
	return check(C.go_norm_gated(l.h, &c, ws, n, C.uintptr_t(stream)))
}

// NormGated runs gdn_norm_gated.
func (l *Layer) NormGated(a NormArgs, stream uintptr) error { return l.norm(a, stream, false) }

// NormGatedFP8Quant runs gdn_norm_gated_fp8_quant.
func (l *Layer) NormGatedFP8Quant(a NormArgs, stream uintptr) error { return l.norm(a, stream, true) }
