// Every workflow the worker registers (the worker bundles this file; keep it deterministic code only).
export { ping } from './ping.ts';
