package engine

import "sync"

// Shared holds objects that the components built together for one run of
// the engine share, such as the route engine alerts take or a default disk
// quota. Each object is stored under a key the storing package chooses (an
// unexported type, as with context values). A Shared is safe for
// concurrent use; a nil *Shared shares nothing.
type Shared struct {
	mu sync.Mutex
	m  map[any]any
}

// NewShared returns an empty Shared.
func NewShared() *Shared { return &Shared{m: map[any]any{}} }

// Get returns the object stored under key, storing what create returns
// first when there is none. On a nil Shared it returns create() every
// time.
func (s *Shared) Get(key any, create func() any) any {
	if s == nil {
		return create()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[key]; ok {
		return v
	}
	v := create()
	s.m[key] = v
	return v
}

// Lookup returns the object stored under key, if any. On a nil Shared it
// finds nothing.
func (s *Shared) Lookup(key any) (any, bool) {
	if s == nil {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return v, ok
}
