/**
 * HAProxy PROXY protocol version 2 (haproxy doc/proxy-protocol.txt §2.2), one module per job:
 * proxy-v2-format.ts (constants, types, the signature test), proxy-v2-encode.ts (writing a header),
 * proxy-v2-tlv.ts (checking and reading TLVs), proxy-v2-view.ts (parsing a header, lazily).
 */
export {
  PP2_TYPE,
  PROXY_V2_MAX_UNIQUE_ID,
  PROXY_V2_SIGNATURE,
  proxyV2Length,
  startsLikeProxyV2,
  type ProxySslTlv,
  type ProxyTlv,
  type ProxyV2Family,
  type ProxyV2Header,
  type ProxyV2Init,
  type ProxyV2Transport,
} from "./proxy-v2-format.js";
export { encodeProxyV2 } from "./proxy-v2-encode.js";
export { decodeProxyV2, parseProxyV2, ProxyV2View } from "./proxy-v2-view.js";
