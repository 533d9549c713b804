package window

// SetLogRows sets the number of rows a slot logs before its sketches turn
// dense, and returns a function that restores it.
func SetLogRows(n int) (restore func()) {
	old := logRows
	logRows = n
	return func() { logRows = old }
}

// SetFastMaxAdds sets the number of values a fast sum tier holds before it
// is flushed, and returns a function that restores it.
func SetFastMaxAdds(n uint32) (restore func()) {
	old := fastMaxAdds
	fastMaxAdds = n
	return func() { fastMaxAdds = old }
}
