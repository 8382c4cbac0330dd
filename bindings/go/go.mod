module libgdn.org/gdn

go 1.19
