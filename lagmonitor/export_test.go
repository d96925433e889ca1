package lagmonitor

// DecodeLegacy decodes as a reader of the first release of version 1 does:
// knowing only the fields that release had.
func DecodeLegacy(key, value []byte) (Signal, bool, error) { return decode(key, value, legacyFields) }
