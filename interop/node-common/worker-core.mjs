// The test functions every Node interop worker registers. Version-neutral:
// registerFunction(id, handler) and trigger({function_id, payload, action,
// timeoutMs}) are the same in iii-sdk 0.11.6 and 0.22.1.
import { out } from './harness.mjs'

/**
 * Normalise a rejected trigger() into {code, message}.
 * Node's InvocationError (0.22.1) / IIIInvocationError (0.11.6) carries the wire
 * ErrorBody code in `.code` but its `.message` is "<code>: <wire message>"; the
 * prefix is stripped so the result holds the wire message as the engine sent it.
 * Other errors (e.g. "iii is shutting down") have no code: code is null.
 */
export function normaliseError(err) {
  const code = typeof err?.code === 'string' ? err.code : null
  let message = err instanceof Error ? err.message : String(err)
  if (code !== null && message.startsWith(`${code}: `)) message = message.slice(code.length + 2)
  return { code, message }
}

/** Register <prefix>::{echo,fail,hang,mark,call,pid} on `iii`. */
export function registerTestFunctions(iii, prefix) {
  iii.registerFunction(`${prefix}::echo`, async (input) => input)

  iii.registerFunction(`${prefix}::fail`, async () => {
    throw new Error(`boom from ${prefix}`)
  })

  iii.registerFunction(`${prefix}::hang`, async (input) => {
    out(`HANG ${input?.tag}`)
    return new Promise(() => {})
  })

  iii.registerFunction(`${prefix}::mark`, async (input) => {
    out(`MARK ${JSON.stringify(input?.value)}`)
    return null
  })

  iii.registerFunction(`${prefix}::call`, async (input) => {
    const { function_id, payload, action, timeout_ms } = input ?? {}
    let act
    if (action === 'void') act = { type: 'void' }
    else if (action && typeof action === 'object') act = action // e.g. {type:'enqueue', queue:'q'}
    try {
      // payload is passed through as given: omitted in the input => no `data` key on the wire.
      const result = await iii.trigger({ function_id, payload, action: act, timeoutMs: timeout_ms })
      return { result: result === undefined ? null : result }
    } catch (err) {
      return { error: normaliseError(err) }
    }
  })

  iii.registerFunction(`${prefix}::pid`, async () => ({ pid: process.pid }))
}
