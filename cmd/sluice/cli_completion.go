package main

import (
	"fmt"
	"io"
)

// bashCompletion completes subcommands, their actions and the flags they
// share; function ids are completed from a running engine (sluice
// functions --json), silently skipped when none answers.
const bashCompletion = `# bash completion for sluice: source <(sluice completion bash)
_sluice() {
  local cur prev words cword
  cur="${COMP_WORDS[COMP_CWORD]}"; prev="${COMP_WORDS[COMP_CWORD-1]}"
  local cmds="serve version functions workers triggers trigger queue state stream channel pipe tail completion help"
  local common="--url --token --json --timeout"
  if [ "$COMP_CWORD" -eq 1 ]; then COMPREPLY=($(compgen -W "$cmds --version -h" -- "$cur")); return; fi
  case "${COMP_WORDS[1]}" in
    functions) [ "$COMP_CWORD" -eq 2 ] && COMPREPLY=($(compgen -W "list info $common --all" -- "$cur")) || COMPREPLY=($(compgen -W "$common --all" -- "$cur"));;
    queue) [ "$COMP_CWORD" -eq 2 ] && COMPREPLY=($(compgen -W "stats dlq redrive" -- "$cur")) || COMPREPLY=($(compgen -W "$common --limit" -- "$cur"));;
    state) [ "$COMP_CWORD" -eq 2 ] && COMPREPLY=($(compgen -W "get set delete list" -- "$cur")) || COMPREPLY=($(compgen -W "$common" -- "$cur"));;
    stream) [ "$COMP_CWORD" -eq 2 ] && COMPREPLY=($(compgen -W "list" -- "$cur")) || COMPREPLY=($(compgen -W "$common" -- "$cur"));;
    channel) [ "$COMP_CWORD" -eq 2 ] && COMPREPLY=($(compgen -W "send recv" -- "$cur")) || COMPREPLY=($(compgen -f -W "$common" -- "$cur"));;
    trigger|pipe)
      if [ "$COMP_CWORD" -eq 2 ] && [[ "$cur" != -* ]]; then
        local ids; ids=$(sluice functions --all --json --timeout 2s 2>/dev/null | grep -o '"function_id":"[^"]*"' | cut -d'"' -f4)
        COMPREPLY=($(compgen -W "$ids" -- "$cur"))
      else COMPREPLY=($(compgen -f -W "$common --void --enqueue" -- "$cur")); fi;;
    triggers) COMPREPLY=($(compgen -W "$common --types --all" -- "$cur"));;
    workers) COMPREPLY=($(compgen -W "$common" -- "$cur"));;
    tail) COMPREPLY=($(compgen -W "--function --count --console-url --json --token --timeout" -- "$cur"));;
    completion) COMPREPLY=($(compgen -W "bash" -- "$cur"));;
  esac
}
complete -o default -F _sluice sluice
`

func completion(args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "bash" {
		return usageErr("usage: sluice completion bash   (then: source <(sluice completion bash))")
	}
	_, err := fmt.Fprint(stdout, bashCompletion)
	return err
}
