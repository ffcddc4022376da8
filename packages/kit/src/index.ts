// @sluice/kit: what several Sluice packages need once. Internal: no semver promise to users.
export { codedErrorGuard } from './error-guard.js';
export {
  Evented,
  type Listener,
  type ListenerErrorHandler,
  settableValue,
  TypedEvents,
  warnListenerError,
} from './events.js';
export { Health, type HealthEvents, type HealthOptions, type HealthState } from './health.js';
export { LinkedList, type ListNode } from './list.js';
export {
  checkBoolean,
  checkChoice,
  checkFunction,
  checkInteger,
  checkNumber,
  checkObject,
  checkString,
  optional,
  show,
} from './options.js';
export { checkPathPattern, type PathMatcher, pathMatcher } from './path-matcher.js';
export { sqlName } from './sql-name.js';
export { isTimeoutError, TimeoutError, type WithTimeoutOptions, withTimeout } from './timeouts.js';
export { armWait, type WaitEnd } from './wait.js';
