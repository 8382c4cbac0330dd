module libgdn.org/examples/decode_step

go 1.19

require libgdn.org/gdn v0.0.0

replace libgdn.org/gdn => ../../../bindings/go
