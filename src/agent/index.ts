/**
 * The backend agent's Node API: load/unload the receiver, read counters, and get a socket's client
 * address from its TOA.
 */
export { clientAddress, requestClient, closeClientAddressMaps, decodePeer, type ClientAddress, type ClientAddressOptions } from "./client-address.js";
export { loadReceiver, RECEIVER_FEATURES, type LoadResult } from "./receiver.js";
export { unloadReceiver, type UnloadResult } from "./unload.js";
export { readLoadedSettings } from "./loaded.js";
export { defaultCgroup } from "./cgroup-folder.js";
export { receiverCounters, readCounters, type Counters } from "./stats.js";
export { measureReceiverCost, type ReceiverCost, type ProgramCost } from "./cost.js";
// The TOA sender lives with its user, the balancer (src/lb/sender/); the Node API keeps exporting it.
export { ToaSender, type ConnectionKey, type SenderOptions } from "../lb/sender/toa-sender.js";
export { parseKinds, parseTrust, parseCidr, SettingsError, type ReceiverSettings, type StoredSettings, type Cidr } from "./settings.js";
export { DEFAULT_PIN_DIR } from "./pins.js";
export { AgentError, AgentConfigError, TargetError, type AgentErrorCode } from "./errors.js";
