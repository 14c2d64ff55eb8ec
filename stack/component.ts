/** One real server of the local stack. `up` installs what is missing, then starts it if it is not answering. */
export interface Component {
  name: string;
  /** Installs binaries/packages when missing; quick when everything is there already. */
  install(): Promise<void>;
  /** Starts the server unless it already answers; resolves once it answers. */
  start(): Promise<void>;
  /** Stops only a process this stack started (from its pid file). */
  stop(): Promise<void>;
  status(): Promise<ComponentStatus>;
  /** When true, a failure to install or start is reported but does not fail `up`. */
  optional?: boolean;
}

export interface ComponentStatus {
  address: string;
  healthy: boolean;
  /** Why not healthy, or a short detail when healthy. */
  detail: string;
}
