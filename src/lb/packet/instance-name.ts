/** An instance's names, apart from instance.ts so the config parser reads them without the eBPF code. */
import { join } from "node:path";

/** Where instances live unless packet.pinDir says otherwise. */
export const INSTANCE_PIN_ROOT = "/sys/fs/bpf/toa-lb";

/** An instance's name: what its folder, tc filters and claim file are called after. */
export const INSTANCE_NAME = /^[A-Za-z0-9_-]{1,32}$/;

export const defaultPinDir = (instance: string): string => join(INSTANCE_PIN_ROOT, instance);

/** The name of the instance's classic tc filters (TCA_BPF_NAME). */
export const filterName = (instance: string): string => `toa:nat:${instance}`;

/** The instance record's pin: a folder with it holds a finished instance. */
export const META_PIN = "nat_meta";
