// Ed25519 public keys as curve points (RFC 8032), in BigInt arithmetic modulo p = 2^255 - 19:
// enough to refuse, once at configuration, a key under which anyone can forge a signature.
// Not constant-time, and need not be: public keys are public.

const P = 2n ** 255n - 19n;
/** d = -121665 / 121666 (mod p). */
const D = 37095705934669439343138083508754565189542113879843219016388785533085940283555n;
/** A square root of -1 (mod p): 2^((p-1)/4). */
const SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752n;

const mod = (a: bigint) => {
  const r = a % P;
  return r < 0n ? r + P : r;
};

function pow(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
  }
  return result;
}

/** A point in extended coordinates: x = X/Z, y = Y/Z, x·y = T/Z. */
interface Point {
  X: bigint;
  Y: bigint;
  Z: bigint;
  T: bigint;
}

/** [2]Q (RFC 8032 §5.1.4, the doubling formula for a = -1). */
function double(q: Point): Point {
  const a = (q.X * q.X) % P;
  const b = (q.Y * q.Y) % P;
  const c = (2n * q.Z * q.Z) % P;
  const h = a + b;
  const e = mod(h - (q.X + q.Y) * (q.X + q.Y));
  const g = mod(a - b);
  const f = c + g;
  return { X: (e * f) % P, Y: (g * h) % P, Z: (f * g) % P, T: (e * h) % P };
}

/**
 * The point a 32-byte encoding stands for, decoded as RFC 8032 §5.1.3 says, or why it stands for
 * none: y ≥ p (a second, non-canonical encoding of a smaller y), no x on the curve for y, or x = 0
 * with the sign bit set (a second encoding of the same point).
 */
function decode(raw: Uint8Array): Point | string {
  let y = 0n;
  for (let i = 31; i >= 0; i--)
    y = (y << 8n) | BigInt((raw[i] as number) & (i === 31 ? 0x7f : 0xff));
  const sign = (raw[31] as number) >> 7;
  if (y >= P) return "is a non-canonical encoding (y ≥ p)";
  const y2 = (y * y) % P;
  const u = mod(y2 - 1n);
  const v = mod(D * y2 + 1n);
  // x = (u/v)^((p+3)/8), computed as u·v^3·(u·v^7)^((p-5)/8).
  let x = (((u * pow(v, 3n)) % P) * pow(u * pow(v, 7n), (P - 5n) / 8n)) % P;
  const vx2 = (v * x * x) % P;
  if (vx2 !== u) {
    if (vx2 !== mod(-u)) return "is not a point of the curve";
    x = (x * SQRT_M1) % P;
  }
  if (x === 0n && sign === 1) return "is a non-canonical encoding (x = 0 with the sign bit set)";
  if (Number(x & 1n) !== sign) x = P - x;
  return { X: x, Y: y, Z: 1n, T: (x * y) % P };
}

/**
 * Why the raw 32-byte Ed25519 public key `raw` must not be trusted, or undefined when it may be:
 * an encoding that does not decode canonically (RFC 8032 §5.1.3: y ≥ p, a point off the curve,
 * x = 0 with the sign bit set), or a point of small order ([8]A is the identity: the identity
 * itself, the all-zero key and the six others of libsodium's blocklist), under which a fixed
 * signature (R = identity, S = 0) verifies for many messages.
 */
export function ed25519PublicKeyProblem(raw: Uint8Array): string | undefined {
  if (raw.length !== 32) return "is not 32 bytes long";
  const a = decode(raw);
  if (typeof a === "string") return a;
  const a8 = double(double(double(a)));
  if (a8.X === 0n && a8.Y === a8.Z) {
    return "is a small-order point ([8]A is the identity): anyone can forge a signature it accepts";
  }
  return undefined;
}
