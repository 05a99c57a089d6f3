package wire

// QuickValidJSON reports whether v is one JSON value (white space around
// it allowed), by the fast decoder's scanner, without checking UTF-8.
// False does not mean invalid: the scanner gives up on values nested
// deeper than it goes; callers then ask jsontext.
func QuickValidJSON(v []byte) bool {
	i := skipWS(v, 0)
	end, ok := skipValue(v, i, 0)
	return ok && skipWS(v, end) == len(v)
}
