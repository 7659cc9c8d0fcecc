package main

import "slices"

// unrecorded returns args, a bastion command line, with --unrecorded after
// its command when the command reads the journal and records the read
// (play, export, evidence, verify, sessions show, sessions search). The
// tests that read tampered, crashed or foreign copies of a journal use it:
// a recorded read would write to the copy (ending the sessions a killed
// recorder left open) or be refused.
func unrecorded(args []string) []string {
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--home":
			i++
		case "play", "export", "evidence", "verify":
			return slices.Insert(slices.Clone(args), i+1, "--unrecorded")
		case "sessions":
			if i+1 < len(args) && (args[i+1] == "show" || args[i+1] == "search") {
				return slices.Insert(slices.Clone(args), i+2, "--unrecorded")
			}
			return args
		default:
			return args
		}
	}
	return args
}
