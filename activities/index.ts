// Every activity the worker registers. Workflows import this file for its types only.
export { ping } from './ping.ts';
