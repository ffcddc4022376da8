/**
 * The type guard of an error class with a stable `code`: true when `e` is one of its instances,
 * optionally with the given code (`isPoolError(e, 'E_POOL_TIMEOUT')`).
 */
export function codedErrorGuard<E extends Error & { readonly code: string }>(
  ErrorClass: abstract new (...args: never[]) => E,
) {
  return <C extends E['code']>(e: unknown, code?: C): e is E & { readonly code: C } =>
    e instanceof ErrorClass && (code === undefined || e.code === code);
}
