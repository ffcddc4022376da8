export { type Listener, type ListenerErrorHandler, TypedEvents, warnListenerError } from './typed-events.js';
