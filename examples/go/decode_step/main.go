// The cross-language synthetic decode step (Go version; see examples/decode_step.c for the spec).
package main

import (
	"fmt"
	"os"

	"libgdn.org/gdn"
)

const HK, HV, K, V, B, Slots = 2, 4, 32, 32, 2, 3

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func tensor(seed int64, mul float32, shape ...int64) (*gdn.Buffer, *gdn.Tensor) {
	b, err := gdn.NewBuffer(gdn.F32, shape...)
	must(err)
	if seed != 0 {
		for i, x := 0, b.Float32s(); i < len(x); i++ {
			x[i] = float32((((int64(i)+seed)*7919)%2001)-1000) / 1024 * mul
		}
	}
	t := b.Tensor()
	return b, &t
}

func main() {
	ctx, err := gdn.NewContext(gdn.CPU, 0, 0)
	must(err)
	defer ctx.Close()
	cfg := gdn.DefaultLayerConfig()
	cfg.NumKHeads, cfg.NumVHeads, cfg.HeadKDim, cfg.HeadVDim = HK, HV, K, V
	cfg.ActDType, cfg.OutDType = gdn.F32, gdn.F32
	layer, err := gdn.NewLayer(ctx, cfg)
	must(err)
	defer layer.Close()

	qb, q := tensor(1, 1, B, 1, HK, K)
	kb, k := tensor(2, 1, B, 1, HK, K)
	vb, v := tensor(3, 1, B, 1, HV, V)
	ab, a := tensor(4, 1, B, 1, HV)
	bb, b := tensor(5, 1, B, 1, HV)
	lb, alog := tensor(6, 1, HV)
	db, dtb := tensor(7, 1, HV)
	sb, state := tensor(8, 0.5, Slots, HV, K, V)
	ob, out := tensor(0, 1, B, 1, HV, V)
	slots, err := gdn.NewBuffer(gdn.I32, B)
	must(err)
	for _, buf := range []*gdn.Buffer{qb, kb, vb, ab, bb, lb, db, sb, ob, slots} {
		defer buf.Close()
	}
	slots.Int32s()[0], slots.Int32s()[1] = 2, 0
	st := slots.Tensor()
	must(layer.Decode(gdn.DecodeArgs{Q: q, K: k, V: v, A: a, B: b, ALog: alog, DtBias: dtb, State: state,
		SlotIdx: &st, Out: out}, 0))
	outSum, stateSum := 0.0, 0.0
	for _, x := range ob.Float32s() {
		outSum += float64(x)
	}
	for _, x := range sb.Float32s() {
		stateSum += float64(x)
	}
	fmt.Printf("out_sum=%.9e state_sum=%.9e\n", outSum, stateSum)
}
