/* Recipe 4 (RECIPES.md) for sockets: a small echo server on 127.0.0.1 whose accept loop and
 * per-client reads must stop when the server is shut down.
 *
 *   polling version : the classic "settimeout(1.0)" server: poll() the listening socket and
 *                     each client with a 1 s timeout, look at the flag, go round again.
 *   stopper version : stopper_wait_fd(s, fd, POLLIN, -1, NULL) waits for the socket and the
 *                     stop together, with no timeout; the acceptor and every client handler
 *                     run as workers of s (stopper_spawn), so stopper_join(s) stops the server
 *                     and returns once every thread has finished and closed its socket.
 *
 * The demo connects one client, checks the echo, and leaves the client connected and idle
 * while the server is stopped.
 *
 * usage: socket_server [--check]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "demo.h"
#include "stopper.h"

#define POLL_TIMEOUT_MS 1000
#define RUN_MS 500

static int listen_local(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("socket_server: listen");
        exit(2);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* a client: connects, sends a line, expects it back; stays connected (idle) until closed */
static int connect_and_echo(uint16_t port, bool *echoed) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("socket_server: connect");
        exit(2);
    }
    char buf[16] = {0};
    *echoed = write(fd, "hello\n", 6) == 6 && read(fd, buf, sizeof buf - 1) == 6 && strcmp(buf, "hello\n") == 0;
    return fd;
}

/* ------------------------------------------------------------------ polling version */

typedef struct polling_server {
    int lfd;
    atomic_bool stop;
    pthread_t clients[16];
    int nclients;
} polling_server;

typedef struct polling_client {
    polling_server *srv;
    int fd;
} polling_client;

static void *polling_client_run(void *arg) {
    polling_client *c = arg;
    char buf[512];
    while (!atomic_load(&c->srv->stop)) {
        struct pollfd p = {c->fd, POLLIN, 0};
        if (poll(&p, 1, POLL_TIMEOUT_MS) <= 0) continue; /* timeout: look at the flag */
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n <= 0 || write(c->fd, buf, (size_t)n) != n) break;
    }
    close(c->fd);
    free(c);
    return NULL;
}

static void *polling_accept_run(void *arg) {
    polling_server *srv = arg;
    while (!atomic_load(&srv->stop)) {
        struct pollfd p = {srv->lfd, POLLIN, 0};
        if (poll(&p, 1, POLL_TIMEOUT_MS) <= 0) continue; /* timeout: look at the flag */
        int fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        polling_client *c = malloc(sizeof *c);
        *c = (polling_client){srv, fd};
        if (srv->nclients == 16 || pthread_create(&srv->clients[srv->nclients], NULL, polling_client_run, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        srv->nclients++;
    }
    return NULL;
}

static double run_polling(void) {
    polling_server srv = {.nclients = 0};
    uint16_t port;
    srv.lfd = listen_local(&port);
    atomic_init(&srv.stop, false);
    pthread_t acceptor;
    pthread_create(&acceptor, NULL, polling_accept_run, &srv);
    bool echoed;
    int client = connect_and_echo(port, &echoed);
    sleep_ms(RUN_MS);
    int64_t t0 = now_ns();
    atomic_store(&srv.stop, true);
    pthread_join(acceptor, NULL); /* the acceptor is done: no more clients are added */
    for (int i = 0; i < srv.nclients; i++) pthread_join(srv.clients[i], NULL);
    double ms = ms_since(t0);
    close(client);
    close(srv.lfd);
    return ms;
}

/* ------------------------------------------------------------------ stopper version */

static void stopper_client_run(void *arg) {
    int fd = (int)(intptr_t)arg;
    stopper *s = stopper_current();
    char buf[512];
    /* STOPPER_OK: readable; STOPPER_STOPPED: the server is stopping (checked first) */
    while (stopper_wait_fd(s, fd, POLLIN, -1, NULL) == STOPPER_OK) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0 || write(fd, buf, (size_t)n) != n) break;
    }
    close(fd);
}

typedef struct stopper_server {
    stopper *s;
    int lfd;
    int accepted;
} stopper_server;

static void stopper_accept_run(void *arg) {
    stopper_server *srv = arg;
    while (stopper_wait_fd(srv->s, srv->lfd, POLLIN, -1, NULL) == STOPPER_OK) {
        int fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        srv->accepted++;
        /* each client is a worker of the same stopper: join waits for it too */
        if (stopper_spawn(srv->s, stopper_client_run, (void *)(intptr_t)fd) != STOPPER_OK) close(fd);
    }
}

static double run_stopper(bool *worked) {
    stopper_server srv = {stopper_new(), -1, 0};
    uint16_t port;
    srv.lfd = listen_local(&port);
    if (!srv.s || stopper_spawn(srv.s, stopper_accept_run, &srv) != STOPPER_OK) exit(2);
    bool echoed;
    int client = connect_and_echo(port, &echoed);
    sleep_ms(RUN_MS);
    int64_t t0 = now_ns();
    int32_t st = stopper_join(srv.s, -1); /* stop the server, wait for acceptor and clients */
    double ms = ms_since(t0);
    /* the server closed its side: the idle client reads end-of-file */
    char c;
    bool closed = read(client, &c, 1) == 0;
    *worked = echoed && srv.accepted == 1 && closed;
    close(client);
    close(srv.lfd);
    stopper_release(srv.s);
    return st == STOPPER_OK ? ms : -1;
}

int main(int argc, char **argv) {
    bool worked = false;
    if (check_mode(argc, argv)) {
        double ms = run_stopper(&worked);
        return report_check("socket_server", ms, worked, "echo served, client closed on stop");
    }
    double polling = run_polling();
    double fast = run_stopper(&worked);
    print_row("4 socket server: accept + client reads, 1 s", polling, fast);
    return 0;
}
