package alert

import "text/template/parse"

// walkTree visits n and every node under it, depth first. visit receives a
// node and the context it is in, and returns the context of the bodies of
// the range and with nodes it holds (the other nodes under it keep the
// node's context), or false to stop the whole walk. walkTree reports
// whether the walk ran to its end.
func walkTree[C any](n parse.Node, ctx C, visit func(parse.Node, C) (C, bool)) bool {
	if n == nil {
		return true
	}
	body, ok := visit(n, ctx)
	if !ok {
		return false
	}
	each := func(c C, nodes ...parse.Node) bool {
		for _, x := range nodes {
			if !walkTree(x, c, visit) {
				return false
			}
		}
		return true
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			return each(ctx, n.Nodes...)
		}
	case *parse.ActionNode:
		return each(ctx, pipe(n.Pipe))
	case *parse.PipeNode:
		if n != nil {
			for _, c := range n.Cmds {
				if !each(ctx, c) {
					return false
				}
			}
		}
	case *parse.CommandNode:
		return each(ctx, n.Args...)
	case *parse.ChainNode:
		return each(ctx, n.Node)
	case *parse.IfNode:
		return each(ctx, pipe(n.Pipe), list(n.List), list(n.ElseList))
	case *parse.RangeNode:
		return each(ctx, pipe(n.Pipe)) && each(body, list(n.List)) && each(ctx, list(n.ElseList))
	case *parse.WithNode:
		return each(ctx, pipe(n.Pipe)) && each(body, list(n.List)) && each(ctx, list(n.ElseList))
	case *parse.TemplateNode:
		return each(ctx, pipe(n.Pipe))
	}
	return true
}

// pipe and list turn typed nil pointers into nil interfaces.
func pipe(p *parse.PipeNode) parse.Node {
	if p == nil {
		return nil
	}
	return p
}

func list(l *parse.ListNode) parse.Node {
	if l == nil {
		return nil
	}
	return l
}
