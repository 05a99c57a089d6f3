//go:build !amd64 || purego

package wsframe

func maskBulk(uint64, []byte) int { return 0 }

func maskCopyBulk(uint64, []byte, []byte) int { return 0 }
