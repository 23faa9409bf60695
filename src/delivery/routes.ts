/**
 * RoutePlanner: which transports may carry one outbound recipient, in the order they are tried
 * (DESIGN.md §1 "Sending"): the user's own SMTP relay (per-user SMTP settings), then the
 * tenant's enabled ESP providers by priority, then the global relay (RELAY_URL), then direct MX
 * delivery when DIRECT_DELIVERY=true. An empty plan means "no outbound route configured": the
 * recipient stays deferred until one is. Bounces (null sender) skip the user's relay: there is
 * no user to speak for.
 */
import type { Outbound } from '../db/types.js';
import type { Transport } from './transport.js';

export interface UserRelaySource {
  transportFor(userId: string): Promise<Transport | null>;
}

export interface ProviderSource {
  transportsFor(tenantId: string): Promise<Transport[]>;
}

export interface RouteSources {
  userRelays?: UserRelaySource;
  providers?: ProviderSource;
  globalRelay?: Transport | null;
  mx?: Transport | null;
}

export class RoutePlanner {
  constructor(private readonly sources: RouteSources) {}

  async plan(row: Pick<Outbound, 'user_id' | 'tenant_id' | 'kind'>): Promise<Transport[]> {
    const plan: Transport[] = [];
    if (row.user_id && row.kind === 'mail' && this.sources.userRelays) {
      const own = await this.sources.userRelays.transportFor(row.user_id);
      if (own) plan.push(own);
    }
    if (this.sources.providers) plan.push(...(await this.sources.providers.transportsFor(row.tenant_id)));
    if (this.sources.globalRelay) plan.push(this.sources.globalRelay);
    if (this.sources.mx) plan.push(this.sources.mx);
    return plan;
  }

  close(): void {
    this.sources.globalRelay?.close();
    this.sources.mx?.close();
  }
}
