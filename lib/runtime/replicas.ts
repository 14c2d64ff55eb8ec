/**
 * This machine's replicas of a slot as the gateway's routing state names them. Replica 0 is the
 * slot's own URL (mainUrl/nightlyUrl); replicas 1.. are listed in mainReplicas/nightlyReplicas,
 * next to any replicas other machines run. Pure: callers fetch the state.
 */
import type { Config } from '../config.ts';
import { namedReplicas, normUrl, type RoutingState } from '../routing.ts';
import { MAX_REPLICAS, slotUrl, type Slot } from './slots.ts';

/** The URLs of replicas 1..count-1 of the slot on this machine: what the routing state names for `count` replicas. */
export function localReplicaUrls(cfg: Config, slot: Slot, count = MAX_REPLICAS): string[] {
  return Array.from({ length: Math.max(0, count - 1) }, (_, i) => slotUrl(cfg, slot, i + 1));
}

/**
 * The replicas the routing state names for the slot that are not this machine's: other machines'
 * (any URL other than the slot's own and its replicas' here).
 */
export function remoteReplicaUrls(state: Pick<RoutingState, 'mainReplicas' | 'nightlyReplicas'>, cfg: Config, slot: Slot): string[] {
  const own = normUrl(slotUrl(cfg, slot));
  return namedReplicas(state, slot)
    .filter((url) => normUrl(url) !== own && localReplicaIndex(cfg, slot, url) === undefined);
}

/** Which of this machine's replicas (1..MAX_REPLICAS-1) a named URL is, trailing slashes aside; undefined for any other URL. */
export function localReplicaIndex(cfg: Config, slot: Slot, url: string): number | undefined {
  const k = localReplicaUrls(cfg, slot).indexOf(normUrl(url));
  return k < 0 ? undefined : k + 1;
}

/**
 * How many replicas of the slot the routing state names on this machine: the highest named
 * replica's index + 1, or 0 when it names none (a gap still counts the replicas below it, so that
 * a retried promotion replaces them all).
 */
export function namedReplicaCount(state: Pick<RoutingState, 'mainReplicas' | 'nightlyReplicas'>, cfg: Config, slot: Slot): number {
  let n = 0;
  for (const url of namedReplicas(state, slot)) {
    const k = localReplicaIndex(cfg, slot, url);
    if (k !== undefined) n = Math.max(n, k + 1);
  }
  return n;
}
