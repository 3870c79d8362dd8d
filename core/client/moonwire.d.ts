// TypeScript declarations of moonwire.js (docs/client.md).
export type State = "connecting" | "open" | "offline" | "closed";

export interface PublicationContext { topic: string; offset: number; epoch: string; }

export interface QueueOptions {
    /** Sends kept while not open (default 100); past it they are dropped and reported. */
    max?: number;
    /** Milliseconds a queued send may wait (default: no limit); older ones are reported. */
    maxAge?: number;
    onDrop?: (info: DropInfo) => void;
}

export interface DropInfo { data: unknown; topic?: string; why: "queue full" | "expired"; }

export interface MoonwireOptions {
    /** A WebSocket constructor, where the runtime has none (Node 20: the ws package's). */
    WebSocket?: unknown;
    /** Backoff base and cap in milliseconds (500 and 20000). */
    minDelay?: number;
    maxDelay?: number;
    /** Milliseconds a handshake may take (10000). */
    connectTimeout?: number;
    /** Silence tolerated beyond the server's heartbeat interval (default max(1000, 40 %)). */
    heartbeatMargin?: number;
    /** Queue sends while not open instead of refusing them. */
    queue?: QueueOptions;
    /** A source of uniform numbers in [0, 1) (tests). */
    random?: () => number;
}

export declare class Subscription {
    readonly topic: string;
    /** The last offset delivered (0: none yet), and its epoch. */
    readonly offset: number;
    readonly epoch: string;
    readonly active: boolean;
    unsubscribe(): void;
    on(event: "subscribed", fn: (e: { recovered: boolean; wasRecovering: boolean }) => void): this;
    on(event: "resync", fn: (e: { offset: number; epoch: string }) => void): this;
    on(event: "error", fn: (e: { code: number; reason: string }) => void): this;
    off(event: string, fn: (...args: any[]) => void): this;
}

export declare class Moonwire {
    constructor(url: string, options?: MoonwireOptions);
    readonly state: State;
    subscribe(topic: string,
              onPublication: (data: string | Uint8Array, ctx: PublicationContext) => void): Subscription;
    send(data: string | ArrayBuffer | ArrayBufferView): boolean;
    publish(topic: string, data: string): boolean;
    close(): void;
    on(event: "state", fn: (state: State) => void): this;
    on(event: "message", fn: (data: string | Uint8Array) => void): this;
    on(event: "error", fn: (e: { id: number; code: number; reason: string; topic?: string }) => void): this;
    on(event: "drop", fn: (info: DropInfo) => void): this;
    /** Publications of topics the app subscribed this connection to (conn:subscribe). */
    on(event: "publication", fn: (p: PublicationContext & { data: string | Uint8Array }) => void): this;
    on(event: "disconnect", fn: (e: { code: number; reason: string }) => void): this;
    off(event: string, fn: (...args: any[]) => void): this;
}

export declare function backoffDelay(attempt: number, base?: number, max?: number,
                                     random?: () => number): number;
export declare function retryWindow(reason: string): [number, number] | null;
export default Moonwire;
