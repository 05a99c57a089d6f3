//go:build amd64 && !purego

package wsframe

func avx2Available() bool { return hasAVX2 }
