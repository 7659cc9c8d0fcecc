// Package webhook posts JSON messages to an operator's webhook: the
// just-in-time grants' notices of requests and decisions, and the server's
// alarms ([Alerts]). Delivery never blocks or fails the caller: a bounded
// queue, one post at a time in order, retries with backoff on transport
// errors, 429 and 5xx, and counts of what was delivered, failed and
// dropped. A webhook URL is https, or http to a loopback address only.
package webhook
