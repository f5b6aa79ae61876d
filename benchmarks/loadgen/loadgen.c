/*
 * loadgen.c: the benchmark's load generator.
 *
 * Many Socket.IO v5 clients (Engine.IO v4 over a raw WebSocket) in one thread,
 * non-blocking, on one epoll. It answers pings, counts every delivery per
 * connection (so loss and duplicates show), records publish-to-receipt latency
 * and reports its own CPU time so a reader can see it was not the bottleneck.
 *
 * Every socket is read as soon as epoll reports it. Batching reads (polling every few ms,
 * or SO_RCVLOWAT) would make this program cheaper, but it changes what the server pays:
 * unread data delays TCP ACKs, sends start to fail with EAGAIN and servers switch to their
 * queued, coalesced write paths, and their CPU per delivery then swings by 2x from one
 * phase to the next. Prompt reading keeps the figures stable; the CPU report shows the price.
 *
 * Driven by benchmarks/run.py over stdin/stdout: one command per line in, one
 * JSON object per line out. Only connects to 127.0.0.1.
 *
 *   connect <port> <n> <inflight>    open n clients, at most <inflight> handshaking at once
 *   join                             client i joins rooms "g<i%10>" and "x<i%4>" (acked)
 *   burst <ph> <kind> <k>            client 0 asks the server for k broadcasts in a tight loop
 *   paced <ph> <kind> <rate> <secs> [k]  client 0 asks for k (default 1) broadcasts <rate> times a second
 *   acks <ph> <per_conn>             every client sends <per_conn> acked "echo" events at once
 *   ackspaced <ph> <rate> <secs>     <rate> acked "echo" events a second, round robin
 *   chat <ph> <per_conn>             chat relay: every client sends <per_conn> acked "chat"
 *                                    messages to its room (clients 10r..10r+9 form room "c<r>"),
 *                                    one in flight at a time (the next leaves when the ack arrives)
 *   chatpaced <ph> <rate> <secs>     <rate> chat messages a second, round robin over the clients
 *                                    (a client whose previous message is not acked yet is skipped)
 *   close | quit
 * The chat relay checks exactly-once delivery strictly: every message carries its sender and
 * a per-sender sequence number, and each recipient must see each room mate's numbers as
 * 1, 2, 3, ... (a gap is a loss, a repeat a duplicate); every ack must answer the one message
 * in flight. Its latencies: lat_* is send -> ack, relay_* is send -> receipt by a room mate.
 * kinds: all, room (g0 = 10%), multi (g0+g1+g2 except x0), bin (all, binary attachment),
 *        uni (the server emits to each client in turn)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

enum { ST_FREE, ST_TCP, ST_HTTP, ST_EIO, ST_SIO, ST_READY, ST_DEAD };
enum { PH_IDLE, PH_CONNECT, PH_JOIN, PH_BURST, PH_PACED, PH_ACKS, PH_ACKSPACED, PH_CHAT, PH_CHATPACED };
#define ROOM 10 /* chat room size */
enum { K_ALL, K_ROOM, K_MULTI, K_BIN, K_UNI };

#define CTRL_ACK_BASE 2000000000u /* ack ids at or above this are control acks */
#define MAX_LAT 4000000
#define RBUF 262144
/* Above this many clients, each connects from one of SOURCES loopback addresses
 * (127.0.0.2 ...): with every client on 127.0.0.1, the kernel's search for a free
 * ephemeral port slows each connect() down as the range (28,232 ports by default) fills. */
#define SPREAD_ABOVE 16000
#define SOURCES 16
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

typedef struct {
    int fd, idx, state, retries;
    char *in; size_t inlen, incap;    /* unparsed input (partial frame / HTTP head) */
    char *out; size_t outlen, outcap; /* unsent output */
    int want_out;
    uint32_t got, expect;
    int bin_pending, bin_ph; int64_t bin_t;
    int joined;
    /* chat relay */
    uint32_t chat_goal, chat_sent, chat_acked; /* messages this phase: to send, sent, acked */
    int chat_waiting; int64_t chat_t;          /* a message in flight, and when it left */
    uint32_t last_seq[ROOM];                   /* last sequence number seen from each room mate */
} conn_t;

static conn_t *conns;
static int nconns, port, epfd;
static int started, ready, inflight_max, connect_fail;
static int phase = PH_IDLE, cur_ph = -1, kind;
static int64_t phase_t0, last_progress, pace_next, pace_end;
static double pace_interval;
static int pace_k = 1;
static long long total_got, total_expect, stray, sent_triggers, errors_proto;
static int ctrl_acked, ctrl_expected;
static int32_t *lat; static long nlat;
static int32_t *lat2; static long nlat2; /* chat: relay latency */
static long long seq_errors, chat_acks_owed;
static int64_t *ack_sent; static long ack_cap, ack_seq;
static struct rusage ru0;
static int64_t idle_us; /* time in polls that found nothing, during a phase */
static char rbuf[RBUF];
static int defer_flush;

static int64_t now_us(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *m) { fprintf(stderr, "loadgen: %s: %s\n", m, strerror(errno)); exit(2); }

static void grow(char **b, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    *b = realloc(*b, c); if (!*b) die("realloc");
    *cap = c;
}

static void set_events(conn_t *c) {
    struct epoll_event ev = { .events = EPOLLIN | (c->want_out ? EPOLLOUT : 0), .data.u32 = (uint32_t)c->idx };
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
}

static void kill_conn(conn_t *c, const char *why) {
    if (c->state == ST_DEAD || c->state == ST_FREE) return;
    if (phase != PH_IDLE || c->state != ST_READY) fprintf(stderr, "loadgen: conn %d closed: %s\n", c->idx, why);
    if (c->state == ST_READY) ready--;
    close(c->fd); c->fd = -1; c->state = ST_DEAD; errors_proto++;
}

static void flush_out(conn_t *c) {
    while (c->outlen) {
        ssize_t n = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            kill_conn(c, "send"); return;
        }
        memmove(c->out, c->out + n, c->outlen - n); c->outlen -= n;
    }
    int want = c->outlen > 0;
    if (want != c->want_out) { c->want_out = want; set_events(c); }
}

static void send_raw(conn_t *c, const char *p, size_t n) {
    if (c->state == ST_DEAD) return;
    grow(&c->out, &c->outcap, c->outlen + n);
    memcpy(c->out + c->outlen, p, n); c->outlen += n;
    flush_out(c);
}

/* one masked text frame; the mask key is zero, so the payload goes out as is */
static void send_text(conn_t *c, const char *p, size_t n) {
    char hdr[14]; size_t h = 0;
    hdr[h++] = (char)0x81;
    if (n < 126) hdr[h++] = (char)(0x80 | n);
    else { hdr[h++] = (char)(0x80 | 126); hdr[h++] = (char)(n >> 8); hdr[h++] = (char)n; }
    memset(hdr + h, 0, 4); h += 4;
    if (c->state == ST_DEAD) return;
    grow(&c->out, &c->outcap, c->outlen + h + n);
    memcpy(c->out + c->outlen, hdr, h); memcpy(c->out + c->outlen + h, p, n);
    c->outlen += h + n;
    if (!defer_flush) flush_out(c);
}

static int member(int i, int k) {
    switch (k) {
    case K_ROOM: return i % 10 == 0;
    case K_MULTI: return i % 10 < 3 && i % 4 != 0;
    default: return 1;
    }
}

static long long recipients(int k) {
    long long r = 0;
    for (int i = 0; i < nconns; i++) r += member(i, k);
    return r;
}

static const char *kind_name(int k) {
    static const char *n[] = { "all", "room", "multi", "bin", "uni" };
    return n[k];
}

static int64_t field_num(const char *p, size_t n, const char *key) {
    /* finds "key" then skips ':' and spaces (python's json.dumps writes ": ") */
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 < n; i++) {
        if (p[i] == '"' && memcmp(p + i + 1, key, kl) == 0 && p[i + 1 + kl] == '"') {
            size_t j = i + kl + 2;
            while (j < n && (p[j] == ':' || p[j] == ' ')) j++;
            int64_t v = 0;
            while (j < n && p[j] >= '0' && p[j] <= '9') v = v * 10 + (p[j++] - '0');
            return v;
        }
    }
    return -1;
}

static void receipt(conn_t *c, int ph, int64_t t) {
    if (ph != cur_ph || (phase != PH_BURST && phase != PH_PACED)) { stray++; return; }
    c->got++; total_got++;
    last_progress = now_us();
    if (t > 0 && nlat < MAX_LAT) lat[nlat++] = (int32_t)(last_progress - t);
}

static void chat_send(conn_t *c);

/* a relayed chat message from room mate s with sequence number n */
static void chat_receipt(conn_t *c, int ph, int s, int64_t n, int64_t t) {
    if (ph != cur_ph || (phase != PH_CHAT && phase != PH_CHATPACED) || s < 0 || s >= nconns
        || s / ROOM != c->idx / ROOM || s == c->idx) { stray++; return; }
    uint32_t *last = &c->last_seq[s % ROOM];
    if (n == (int64_t)*last + 1) *last = (uint32_t)n;
    else { seq_errors++; if (n > (int64_t)*last) *last = (uint32_t)n; }
    c->got++; total_got++;
    last_progress = now_us();
    if (t > 0 && nlat2 < MAX_LAT) lat2[nlat2++] = (int32_t)(last_progress - t);
}

static void on_ack(conn_t *c, uint32_t id) {
    if (id >= CTRL_ACK_BASE) { ctrl_acked++; last_progress = now_us(); return; }
    if (phase == PH_CHAT || phase == PH_CHATPACED) {
        /* the ack must answer the one message in flight: id = its sequence number */
        if (!c->chat_waiting || id != c->chat_sent) { stray++; return; }
        c->chat_waiting = 0; c->chat_acked++; chat_acks_owed--;
        last_progress = now_us();
        if (nlat < MAX_LAT) lat[nlat++] = (int32_t)(last_progress - c->chat_t);
        if (phase == PH_CHAT && c->chat_sent < c->chat_goal) chat_send(c);
        return;
    }
    if (phase != PH_ACKS && phase != PH_ACKSPACED) { stray++; return; }
    c->got++; total_got++;
    last_progress = now_us();
    if (phase == PH_ACKSPACED && id < ack_cap && ack_sent[id] && nlat < MAX_LAT)
        lat[nlat++] = (int32_t)(last_progress - ack_sent[id]);
}

static void on_text(conn_t *c, const char *p, size_t n) {
    if (n == 0) return;
    switch (p[0]) {
    case '0': /* Engine.IO open: connect to the main namespace */
        c->state = ST_SIO; send_text(c, "40", 2); return;
    case '2': send_text(c, "3", 1); return;
    case '6': return;
    case '1': kill_conn(c, "engine.io close"); return;
    case '4': break;
    default: errors_proto++; return;
    }
    if (n < 2) { errors_proto++; return; }
    switch (p[1]) {
    case '0':
        if (c->state == ST_SIO) { c->state = ST_READY; ready++; last_progress = now_us(); }
        return;
    case '2': {
        int64_t ph = field_num(p, n, "ph");
        if (n > 6 && memcmp(p + 2, "[\"m\"", 4) == 0)
            chat_receipt(c, (int)ph, (int)field_num(p, n, "s"), field_num(p, n, "n"), field_num(p, n, "t"));
        else
            receipt(c, (int)ph, field_num(p, n, "t"));
        return;
    }
    case '5':
        c->bin_pending = 1;
        c->bin_ph = (int)field_num(p, n, "ph");
        c->bin_t = field_num(p, n, "t");
        return;
    case '3': {
        uint64_t id = 0; size_t j = 2;
        while (j < n && p[j] >= '0' && p[j] <= '9') id = id * 10 + (p[j++] - '0');
        on_ack(c, (uint32_t)id);
        return;
    }
    default:
        fprintf(stderr, "loadgen: conn %d unexpected packet %.*s\n", c->idx, (int)(n < 80 ? n : 80), p);
        kill_conn(c, "socket.io error");
    }
}

/* parses complete server frames in p[0..n); returns the bytes consumed */
static size_t parse_frames(conn_t *c, char *p, size_t n) {
    size_t off = 0;
    while (n - off >= 2) {
        unsigned char b0 = (unsigned char)p[off], b1 = (unsigned char)p[off + 1];
        size_t h = 2; uint64_t len = b1 & 0x7f;
        if (b1 & 0x80) { kill_conn(c, "masked server frame"); return n; }
        if (len == 126) { if (n - off < 4) break; len = ((unsigned char)p[off + 2] << 8) | (unsigned char)p[off + 3]; h = 4; }
        else if (len == 127) {
            if (n - off < 10) break;
            len = 0; for (int i = 0; i < 8; i++) len = (len << 8) | (unsigned char)p[off + 2 + i];
            h = 10;
        }
        if (n - off < h + len) break;
        char *pl = p + off + h;
        switch (b0 & 0x0f) {
        case 1: on_text(c, pl, len); break;
        case 2:
            if (c->bin_pending) { c->bin_pending = 0; receipt(c, c->bin_ph, c->bin_t); }
            else stray++;
            break;
        case 8: kill_conn(c, "websocket close"); return n;
        case 9: { /* ping: answer with a pong carrying the same payload */
            char hdr[6] = { (char)0x8a, (char)(0x80 | (len & 0x7f)), 0, 0, 0, 0 };
            send_raw(c, hdr, 6); send_raw(c, pl, len); break;
        }
        case 10: break;
        default: kill_conn(c, "fragmented or unknown frame"); return n;
        }
        if (c->state == ST_DEAD) return n;
        off += h + len;
    }
    return off;
}

static void on_input(conn_t *c, char *p, size_t n) {
    if (c->state == ST_HTTP) {
        grow(&c->in, &c->incap, c->inlen + n);
        memcpy(c->in + c->inlen, p, n); c->inlen += n;
        char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
        if (!end) return;
        if (c->inlen < 12 || memcmp(c->in + 9, "101", 3) != 0) { kill_conn(c, "no 101 switching protocols"); return; }
        size_t head = (size_t)(end - c->in) + 4;
        c->state = ST_EIO;
        memmove(c->in, c->in + head, c->inlen - head); c->inlen -= head;
        size_t used = parse_frames(c, c->in, c->inlen);
        if (c->state == ST_DEAD) return;
        memmove(c->in, c->in + used, c->inlen - used); c->inlen -= used;
        return;
    }
    if (c->inlen == 0) {
        size_t used = parse_frames(c, p, n);
        if (c->state == ST_DEAD || used == n) return;
        grow(&c->in, &c->incap, n - used);
        memcpy(c->in, p + used, n - used); c->inlen = n - used;
    } else {
        grow(&c->in, &c->incap, c->inlen + n);
        memcpy(c->in + c->inlen, p, n); c->inlen += n;
        size_t used = parse_frames(c, c->in, c->inlen);
        if (c->state == ST_DEAD) return;
        memmove(c->in, c->in + used, c->inlen - used); c->inlen -= used;
    }
}

static void start_connect(conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (nconns > SPREAD_ABOVE) {
        /* the port is picked at connect(), for the whole 4-tuple, not at bind() */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = { .sin_family = AF_INET };
        src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + (uint32_t)(c->idx % SOURCES));
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) die("bind");
    }
    c->fd = fd; c->state = ST_TCP; c->inlen = c->outlen = 0; c->want_out = 1;
    c->got = c->expect = 0; c->bin_pending = 0; c->joined = 0;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)c->idx };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(fd); c->fd = -1; c->state = ST_DEAD; connect_fail++;
    }
}

static void tcp_connected(conn_t *c) {
    int err = 0; socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
        close(c->fd); c->fd = -1; connect_fail++;
        if (++c->retries < 20) start_connect(c); else c->state = ST_DEAD;
        return;
    }
    char req[256];
    int n = snprintf(req, sizeof req,
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: cm9vbWNhc3QtYmVuY2htYQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", port);
    c->state = ST_HTTP; c->want_out = 0; set_events(c);
    send_raw(c, req, (size_t)n);
}

static int handshaking(void) {
    int h = 0;
    for (int i = 0; i < started; i++) if (conns[i].state >= ST_TCP && conns[i].state < ST_READY) h++;
    return h;
}

static void top_up_connects(void) {
    int h = handshaking();
    while (started < nconns && h < inflight_max) { start_connect(&conns[started]); started++; h++; }
}

static double cpu_secs(struct rusage *a, struct rusage *b) {
    return (b->ru_utime.tv_sec - a->ru_utime.tv_sec) + (b->ru_utime.tv_usec - a->ru_utime.tv_usec) / 1e6 +
           (b->ru_stime.tv_sec - a->ru_stime.tv_sec) + (b->ru_stime.tv_usec - a->ru_stime.tv_usec) / 1e6;
}

static void begin_phase(int p) {
    phase = p; phase_t0 = last_progress = now_us();
    getrusage(RUSAGE_SELF, &ru0);
    total_got = 0; stray = 0; nlat = 0; nlat2 = 0; seq_errors = 0; chat_acks_owed = 0; ctrl_acked = 0; ctrl_expected = 0; sent_triggers = 0;
    errors_proto = 0; idle_us = 0;
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        c->got = c->expect = 0;
        c->chat_goal = c->chat_sent = c->chat_acked = 0; c->chat_waiting = 0;
        memset(c->last_seq, 0, sizeof c->last_seq);
    }
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void end_phase(const char *name, int timed_out) {
    int64_t t1 = now_us();
    struct rusage ru1; getrusage(RUSAGE_SELF, &ru1);
    /* the measured interval ends at the last receipt, not at the idle timeout */
    double wall = ((timed_out ? last_progress : t1) - phase_t0) / 1e6;
    double lcpu = cpu_secs(&ru0, &ru1);
    long long missing = 0, dup = 0; int exact = 0, live = 0;
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (c->state == ST_READY) live++;
        if (c->got < c->expect) missing += c->expect - c->got;
        else if (c->got > c->expect) dup += c->got - c->expect;
        if (c->got == c->expect) exact++;
    }
    double p50 = -1, p99 = -1, pmax = -1, r50 = -1, r99 = -1;
    if (nlat) {
        qsort(lat, (size_t)nlat, sizeof *lat, cmp_i32);
        p50 = lat[nlat / 2] / 1e3; p99 = lat[(long)((nlat - 1) * 0.99)] / 1e3; pmax = lat[nlat - 1] / 1e3;
    }
    if (nlat2) {
        qsort(lat2, (size_t)nlat2, sizeof *lat2, cmp_i32);
        r50 = lat2[nlat2 / 2] / 1e3; r99 = lat2[(long)((nlat2 - 1) * 0.99)] / 1e3;
    }
    long long events = 0, acks_missing = 0;
    for (int i = 0; i < nconns; i++) {
        events += conns[i].chat_sent;
        acks_missing += conns[i].chat_sent - conns[i].chat_acked;
    }
    printf("{\"cmd\":\"%s\",\"wall\":%.6f,\"loadgen_cpu\":%.6f,\"deliveries\":%lld,\"expected\":%lld,"
           "\"missing\":%lld,\"duplicate\":%lld,\"stray\":%lld,\"exact_conns\":%d,\"conns\":%d,\"live\":%d,"
           "\"triggers\":%lld,\"timed_out\":%d,\"lat_n\":%ld,\"lat_p50_ms\":%.3f,\"lat_p99_ms\":%.3f,"
           "\"lat_max_ms\":%.3f,\"errors\":%lld,\"connect_fail\":%d,\"events\":%lld,"
           "\"acks_missing\":%lld,\"seq_errors\":%lld,\"relay_p50_ms\":%.3f,\"relay_p99_ms\":%.3f,"
           "\"busy\":%.6f}\n",
           name, wall, lcpu, total_got, total_expect, missing, dup, stray, exact, nconns, live,
           sent_triggers, timed_out, nlat, p50, p99, pmax, errors_proto, connect_fail,
           events, acks_missing, seq_errors, r50, r99,
           1.0 - idle_us / 1e6 / ((t1 - phase_t0) / 1e6 > 0 ? (t1 - phase_t0) / 1e6 : 1));
    fflush(stdout);
    phase = PH_IDLE;
}

static void send_trigger(int k, int count, int with_ack) {
    char msg[200]; int n;
    conn_t *c = &conns[0];
    if (with_ack)
        n = snprintf(msg, sizeof msg, "42%u[\"burst\",{\"kind\":\"%s\",\"k\":%d,\"ph\":%d,\"t\":0}]",
                     CTRL_ACK_BASE + (unsigned)sent_triggers, kind_name(k), count, cur_ph);
    else
        n = snprintf(msg, sizeof msg, "42[\"burst\",{\"kind\":\"%s\",\"k\":%d,\"ph\":%d,\"t\":%lld}]",
                     kind_name(k), count, cur_ph, (long long)now_us());
    send_text(c, msg, (size_t)n);
    sent_triggers++;
}

static void send_echo(conn_t *c) {
    char msg[160];
    long id = ack_seq++;
    if (id < ack_cap) ack_sent[id] = now_us();
    int n = snprintf(msg, sizeof msg, "42%ld[\"echo\",{\"ph\":%d,\"p\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}]", id, cur_ph);
    send_text(c, msg, (size_t)n);
}

/* the next chat message of c to its room, acked with id = its sequence number */
static void chat_send(conn_t *c) {
    char msg[200];
    uint32_t seq = ++c->chat_sent;
    c->chat_waiting = 1; c->chat_t = now_us(); chat_acks_owed++;
    int first = c->idx / ROOM * ROOM, mates = 0;
    for (int j = first; j < first + ROOM && j < nconns; j++)
        if (j != c->idx) { conns[j].expect++; mates++; }
    total_expect += mates;
    int n = snprintf(msg, sizeof msg,
        "42%u[\"chat\",{\"room\":\"c%d\",\"d\":{\"ph\":%d,\"t\":%lld,\"s\":%d,\"n\":%u,"
        "\"p\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}}]",
        seq, c->idx / ROOM, cur_ph, (long long)c->chat_t, c->idx, seq);
    send_text(c, msg, (size_t)n);
}

static int kind_of(const char *s) {
    for (int k = K_ALL; k <= K_UNI; k++) if (!strcmp(s, kind_name(k))) return k;
    fprintf(stderr, "loadgen: unknown kind %s\n", s); exit(2);
}

static void command(char *line) {
    char a[32], b[32]; int x, y; double r, d;
    if (sscanf(line, "connect %d %d %d", &port, &nconns, &inflight_max) == 3) {
        conns = calloc((size_t)nconns, sizeof *conns);
        for (int i = 0; i < nconns; i++) { conns[i].idx = i; conns[i].fd = -1; }
        started = ready = connect_fail = 0;
        begin_phase(PH_CONNECT); total_expect = nconns;
        top_up_connects();
    } else if (!strncmp(line, "join", 4)) {
        begin_phase(PH_JOIN); total_expect = nconns;
        for (int i = 0; i < nconns; i++) {
            char msg[80];
            int n = snprintf(msg, sizeof msg, "42%u[\"join\",[\"g%d\",\"x%d\",\"c%d\"]]", CTRL_ACK_BASE,
                             i % 10, i % 4, i / ROOM);
            send_text(&conns[i], msg, (size_t)n);
        }
        ctrl_expected = nconns;
    } else if (sscanf(line, "burst %d %31s %d", &x, a, &y) == 3) {
        cur_ph = x; kind = kind_of(a);
        begin_phase(PH_BURST);
        for (int i = 0; i < nconns; i++) conns[i].expect = member(i, kind) ? (uint32_t)y : 0;
        total_expect = recipients(kind) * y;
        ctrl_expected = 1;
        send_trigger(kind, y, 1);
    } else if (sscanf(line, "paced %d %31s %lf %lf", &x, a, &r, &d) == 4) {
        if (sscanf(line, "paced %*d %*s %*f %*f %d", &pace_k) != 1 || pace_k < 1) pace_k = 1;
        cur_ph = x; kind = kind_of(a);
        begin_phase(PH_PACED);
        pace_interval = 1e6 / r; pace_next = now_us(); pace_end = pace_next + (int64_t)(d * 1e6);
        total_expect = 0;
    } else if (sscanf(line, "acks %d %d", &x, &y) == 2) {
        cur_ph = x; begin_phase(PH_ACKS);
        ack_seq = 0;
        for (int i = 0; i < nconns; i++) conns[i].expect = (uint32_t)y;
        total_expect = (long long)nconns * y;
        defer_flush = 1;
        for (int j = 0; j < y; j++) for (int i = 0; i < nconns; i++) send_echo(&conns[i]);
        defer_flush = 0;
        for (int i = 0; i < nconns; i++) flush_out(&conns[i]);
    } else if (sscanf(line, "ackspaced %d %lf %lf", &x, &r, &d) == 3) {
        cur_ph = x; begin_phase(PH_ACKSPACED);
        ack_seq = 0; ack_cap = (long)(r * d) + 16;
        free(ack_sent); ack_sent = calloc((size_t)ack_cap, sizeof *ack_sent);
        pace_interval = 1e6 / r; pace_next = now_us(); pace_end = pace_next + (int64_t)(d * 1e6);
        total_expect = 0;
    } else if (sscanf(line, "chat %d %d", &x, &y) == 2) {
        cur_ph = x; begin_phase(PH_CHAT);
        total_expect = 0;
        defer_flush = 1;
        for (int i = 0; i < nconns; i++) { conns[i].chat_goal = (uint32_t)y; chat_send(&conns[i]); }
        defer_flush = 0;
        for (int i = 0; i < nconns; i++) flush_out(&conns[i]);
    } else if (sscanf(line, "chatpaced %d %lf %lf", &x, &r, &d) == 3) {
        cur_ph = x; begin_phase(PH_CHATPACED);
        pace_interval = 1e6 / r; pace_next = now_us(); pace_end = pace_next + (int64_t)(d * 1e6);
        total_expect = 0;
    } else if (!strncmp(line, "close", 5)) {
        for (int i = 0; i < nconns; i++) if (conns[i].fd >= 0) { close(conns[i].fd); conns[i].fd = -1; }
        for (int i = 0; i < nconns; i++) { free(conns[i].in); free(conns[i].out); }
        free(conns); conns = NULL; nconns = 0; ready = 0;
        printf("{\"cmd\":\"close\"}\n"); fflush(stdout);
    } else if (!strncmp(line, "quit", 4)) {
        exit(0);
    } else {
        (void)b;
        fprintf(stderr, "loadgen: bad command: %s\n", line); exit(2);
    }
}

/* called after each batch of events: sends what is due and ends the phase when complete */
static int64_t step_phase(void) {
    int64_t now = now_us(), wait = 1000000;
    int stalled = now - last_progress > 10000000; /* 10 s without progress: report what we have */
    switch (phase) {
    case PH_CONNECT:
        top_up_connects();
        if (ready == nconns) {
            total_got = ready;
            for (int i = 0; i < nconns; i++) conns[i].expect = conns[i].got = 1;
            end_phase("connect", 0);
        } else if (stalled) { total_got = ready; end_phase("connect", 1); }
        break;
    case PH_JOIN:
        if (ctrl_acked >= ctrl_expected) { total_got = ctrl_acked; end_phase("join", 0); }
        else if (stalled) { total_got = ctrl_acked; end_phase("join", 1); }
        break;
    case PH_BURST:
        if (total_got >= total_expect && ctrl_acked >= ctrl_expected) end_phase("burst", 0);
        else if (stalled) end_phase("burst", 1);
        break;
    case PH_CHAT:
        if (total_got >= total_expect && chat_acks_owed == 0) end_phase("chat", 0);
        else if (stalled) end_phase("chat", 1);
        break;
    case PH_PACED:
    case PH_ACKSPACED:
    case PH_CHATPACED:
        while (now >= pace_next && now < pace_end) {
            if (phase == PH_CHATPACED) {
                /* round robin; a client still waiting for its previous ack is skipped */
                for (int tries = 0; tries < nconns; tries++) {
                    conn_t *c = &conns[sent_triggers++ % nconns];
                    if (c->state == ST_READY && !c->chat_waiting) { chat_send(c); break; }
                }
            } else if (phase == PH_PACED) {
                send_trigger(kind, pace_k, 0);
                for (int i = 0; i < nconns; i++) if (member(i, kind)) conns[i].expect += (uint32_t)pace_k;
                total_expect += recipients(kind) * pace_k;
            } else {
                conn_t *c = &conns[sent_triggers % nconns];
                sent_triggers++; c->expect++; total_expect++;
                send_echo(c);
            }
            pace_next += (int64_t)pace_interval;
            if (pace_next < now - 100000) pace_next = now; /* do not let a stall turn into a burst */
            now = now_us();
        }
        if (now < pace_end) { last_progress = now; wait = pace_next - now; }
        else if (total_got >= total_expect && chat_acks_owed == 0)
            end_phase(phase == PH_PACED ? "paced" : phase == PH_ACKSPACED ? "ackspaced" : "chatpaced", 0);
        else if (stalled)
            end_phase(phase == PH_PACED ? "paced" : phase == PH_ACKSPACED ? "ackspaced" : "chatpaced", 1);
        break;
    case PH_ACKS:
        if (total_got >= total_expect) end_phase("acks", 0);
        else if (stalled) end_phase("acks", 1);
        break;
    }
    if (phase == PH_IDLE) wait = 1000000;
    else if (phase != PH_PACED && phase != PH_ACKSPACED && phase != PH_CHATPACED) wait = 100000;
    return wait < 0 ? 0 : wait;
}

int main(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
    lat = malloc(sizeof *lat * MAX_LAT);
    lat2 = malloc(sizeof *lat2 * MAX_LAT);
    epfd = epoll_create1(0); if (epfd < 0) die("epoll_create1");
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = { .events = EPOLLIN, .data.u32 = 0xffffffffu };
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
    char cmdbuf[4096]; size_t cmdlen = 0;
    struct epoll_event evs[1024];
    int64_t wait_us = 1000000; int stdin_eof = 0;
    for (;;) {
        /* epoll_wait has ms resolution: round up (a late send is caught up and timed
           from when it really left), never spin, so the CPU report stays honest */
        /* During a phase we never sleep in epoll_wait: we poll, and yield the core when there
           is nothing, staying runnable. A server's send() then never has to wake us up (on
           loopback a wake-up is ~20% of its cost per send, and whether it is paid depends on
           how busy we happen to be), which is also what a send over a real NIC looks like.
           Our CPU time then includes that polling, so "busy" (the time we had work) is
           the load figure to read. */
        int in_phase = phase != PH_IDLE;
        int64_t poll_t0 = in_phase ? now_us() : 0;
        int n = epoll_wait(epfd, evs, 1024, in_phase ? 0 : (int)((wait_us + 999) / 1000));
        if (in_phase && n == 0) { sched_yield(); idle_us += now_us() - poll_t0; }
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < n; e++) {
            uint32_t id = evs[e].data.u32;
            if (id == 0xffffffffu) {
                ssize_t r = read(0, cmdbuf + cmdlen, sizeof cmdbuf - 1 - cmdlen);
                if (r == 0) { /* run.py went away (or input ended): finish queued commands, then stop */
                    epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL); stdin_eof = 1; continue;
                }
                if (r < 0) continue;
                cmdlen += (size_t)r; cmdbuf[cmdlen] = 0;
                continue;
            }
            if (id >= (uint32_t)nconns) continue;
            conn_t *c = &conns[id];
            if (c->state == ST_DEAD || c->fd < 0) continue;
            if (c->state == ST_TCP) {
                if (evs[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) tcp_connected(c);
                continue;
            }
            if (evs[e].events & EPOLLOUT) flush_out(c);
            if (evs[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                for (;;) {
                    ssize_t r = recv(c->fd, rbuf, RBUF, 0);
                    if (r > 0) { on_input(c, rbuf, (size_t)r); if (c->state == ST_DEAD || r < RBUF) break; continue; }
                    if (r == 0) { kill_conn(c, "eof"); break; }
                    if (errno != EAGAIN) kill_conn(c, "recv");
                    break;
                }
            }
        }
        wait_us = step_phase();
        if (stdin_eof && phase == PH_IDLE && !strchr(cmdbuf, '\n')) exit(0);
        /* commands run one at a time: the next waits until this phase has reported */
        char *nl;
        while (phase == PH_IDLE && (nl = strchr(cmdbuf, '\n'))) {
            *nl = 0; command(cmdbuf);
            size_t rest = cmdlen - (size_t)(nl + 1 - cmdbuf);
            memmove(cmdbuf, nl + 1, rest); cmdlen = rest; cmdbuf[cmdlen] = 0;
            wait_us = 0;
        }
    }
}
