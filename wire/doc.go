// Package wire implements Tandem's client protocol, version 1: frames, the connection
// preamble and one Go type per message with its codec. The specification, with every
// message's byte layout, is docs/protocol.md.
//
// A frame is
//
//	u32 length | u64 request id | u8 type | payload
//
// little-endian, where length counts the bytes after the length field (so at least 9).
// A client opens a connection (after the optional TLS handshake) by writing the preamble
// "TNDC" and a Hello frame; the server answers Welcome or Error. After that the client may
// have any number of requests pending at once: responses carry the request's id and may come
// out of order.
//
// Reader and Writer move frames; each message type has MarshalAppend (append its payload to
// a buffer) and Unmarshal (decode a payload, never panicking, rejecting trailing bytes and
// counts larger than the payload could hold). Decode turns a Frame into its Message.
//
// Values (statement arguments and row cells) are Go values of exactly these types after
// decoding: nil, int64, float64, string, []byte. Arguments may also be Named.
package wire
