// Package kname checks names as Kafka does: topic names and group instance
// ids, 1 to 249 characters of a-z A-Z 0-9 . _ -.
package kname

// MaxLen is Kafka's bound on a topic name and a group instance id.
const MaxLen = 249

// Topic reports whether name is a legal topic name: 1 to MaxLen of
// a-z A-Z 0-9 . _ -, and neither "." nor "..".
func Topic(name string) bool {
	return name != "." && name != ".." && InstanceID(name)
}

// InstanceID reports whether id is a legal group.instance.id: 1 to MaxLen
// of a-z A-Z 0-9 . _ -.
func InstanceID(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
