/* SPDX-License-Identifier: MIT */
/*
 * faultp11: a PKCS#11 module that wraps a real one (SoftHSM) and misbehaves
 * on command, so the tests and the benchmark can show what dkimsignd does
 * when its token fails, hangs or is slow.
 *
 *   FAULTP11_MODULE    the real module (default: Debian's SoftHSM)
 *   FAULTP11_CONTROL   a control file, re-read whenever it changes:
 *
 *     fault = none | device_error | session_closed | session_handle_invalid
 *           | token_not_present | user_not_logged_in | hang | corrupt
 *     latency_ms = N   every C_Sign returns N ms after it was called (a
 *                      network HSM): the real module's signing is inside
 *                      those N ms, not added to them; sessions wait them
 *                      out concurrently, with no lock held
 *     quirks = none | Q[,Q...]   the token behaves as some real HSMs do
 *                      and none of the packaged modules does (below)
 *     session_cap = N  C_OpenSession fails with CKR_SESSION_COUNT while
 *                      this process holds N live sessions (0: no cap)
 *
 * What each fault does, as a real token would:
 *   device_error        C_SignInit and C_Sign fail with CKR_DEVICE_ERROR.
 *   session_closed,     when set, every session open at that moment is
 *   session_handle_invalid  really closed in the module underneath (which
 *                       also logs the application out), and any later use
 *                       of such a session fails with that code.  New
 *                       sessions work.
 *   token_not_present   when set, every open session dies as above; while
 *                       set, the slot shows no token and every call on it
 *                       fails with CKR_TOKEN_NOT_PRESENT (CKR_DEVICE_REMOVED
 *                       on a session).  Clearing it "reinserts" the token:
 *                       the application must open sessions and log in again.
 *   user_not_logged_in  when set, the application is really logged out
 *                       (C_Logout underneath), so signing fails with the
 *                       module's own CKR_USER_NOT_LOGGED_IN.
 *   hang                C_SignInit, C_Sign and C_OpenSession block until the
 *                       fault is cleared.
 *   hang_one            the first C_Sign after it is set blocks until it is
 *                       cleared; every other call works (one stuck session).
 *   corrupt             C_Sign flips one bit of every signature it returns.
 *
 * Quirks, each on while it is listed (they are not faults: they do not
 * count in "faults"):
 *   no_eddsa            the token has no Ed25519: CKM_EDDSA and
 *                       CKM_EC_EDWARDS_KEY_PAIR_GEN are left out of
 *                       C_GetMechanismList, and C_GetMechanismInfo,
 *                       C_SignInit and C_GenerateKeyPair say
 *                       CKR_MECHANISM_INVALID for them.  Ed25519 keys made
 *                       before it was listed stay on the token.
 *   no_copy             C_CopyObject of a private key fails with
 *                       CKR_ACTION_PROHIBITED, whatever its CKA_COPYABLE
 *                       (a policy of the token, not the key).
 *   copy_unsupported    every C_CopyObject fails with
 *                       CKR_FUNCTION_NOT_SUPPORTED.
 *   fresh_session_login the login is per session, not per application
 *                       (some network HSMs): a session opened while it is
 *                       listed is not logged in until C_Login is called on
 *                       it (which then says CKR_USER_ALREADY_LOGGED_IN, as
 *                       SoftHSM underneath is logged in already, or
 *                       CKR_OK); until then C_GetSessionInfo shows it as a
 *                       public session and C_SignInit fails with
 *                       CKR_USER_NOT_LOGGED_IN.  Sessions opened before it
 *                       was listed keep the application's login.  Private
 *                       objects are not hidden from such a session (SoftHSM
 *                       underneath shows them).
 *   ec_params_by_name   Ed25519's curve is named only by its PrintableString
 *                       "edwards25519" in CKA_EC_PARAMS (YubiHSM's module
 *                       does so): C_GenerateKeyPair and C_CreateObject
 *                       with the RFC 8410 OID there fail with
 *                       CKR_ATTRIBUTE_VALUE_INVALID; the name is given to
 *                       SoftHSM underneath as the OID.
 *   pin_changed         the user PIN was changed on the token by someone
 *                       else: C_Login as CKU_USER fails with
 *                       CKR_PIN_INCORRECT (counted in "logins" and
 *                       "pins_refused"), without reaching SoftHSM.
 * The session cap counts this process's live sessions only: it is per
 * application, as on tokens that limit each client.  A token whose limit
 * is shared by every process using it can't be played by a module loaded
 * into each of them.
 *
 * A session is closed underneath only while no call on it is inside the
 * real module: one killed during such a call (another thread's C_Sign) is
 * closed when that call returns, and fails from then on.  SoftHSM frees a
 * closed session's state at once, so closing it under a running call
 * would crash the application, which no real token does.
 *
 * Counters are written to $FAULTP11_STATS (default:
 * $FAULTP11_CONTROL.stats; a process of its own, such as dkimsignctl next
 * to the daemon, is given another so neither overwrites the other's) on
 * every change of the control file, at C_Finalize and, at most every
 * STATS_EVERY_MS, when one of them but "signatures" changes (one counted
 * sooner is written by the next call after that), for tests that wait
 * until the fault was really hit, so many times:
 *   signatures          C_Sign calls that returned a signature
 *   faults              faults returned
 *   sessions            sessions in the table now (live or killed)
 *   sessions_live       sessions open and not killed
 *   sessions_peak       the most live sessions at once
 *   sessions_refused    C_OpenSession calls refused by session_cap
 *   copy_calls          C_CopyObject calls
 *   copies_refused      ... refused by no_copy or copy_unsupported
 *   mech_refused        calls refused by no_eddsa
 *   logins              C_Login calls
 *   pins_refused        ... refused by pin_changed
 *   not_logged_in       C_SignInit calls refused by fresh_session_login
 *   params_refused      templates refused by ec_params_by_name
 *
 * Test code only: it is never installed.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#ifndef FAULTP11_DEFAULT_MODULE
#define FAULTP11_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif
#define SESSIONS_MAX 4096
#define POLL_MS 20
#define STATS_EVERY_MS 20
#define CONTROL_EVERY_MS 5      /* stat the control file at most this often */

enum fault {
        FAULT_NONE,
        FAULT_DEVICE_ERROR,
        FAULT_SESSION_CLOSED,
        FAULT_SESSION_HANDLE_INVALID,
        FAULT_TOKEN_NOT_PRESENT,
        FAULT_USER_NOT_LOGGED_IN,
        FAULT_HANG,
        FAULT_HANG_ONE,
        FAULT_CORRUPT,
};

static const char *const fault_names[] = {
        [FAULT_NONE] = "none",
        [FAULT_DEVICE_ERROR] = "device_error",
        [FAULT_SESSION_CLOSED] = "session_closed",
        [FAULT_SESSION_HANDLE_INVALID] = "session_handle_invalid",
        [FAULT_TOKEN_NOT_PRESENT] = "token_not_present",
        [FAULT_USER_NOT_LOGGED_IN] = "user_not_logged_in",
        [FAULT_HANG] = "hang",
        [FAULT_HANG_ONE] = "hang_one",
        [FAULT_CORRUPT] = "corrupt",
};

enum {
        QUIRK_NO_EDDSA = 1u << 0,
        QUIRK_NO_COPY = 1u << 1,
        QUIRK_COPY_UNSUPPORTED = 1u << 2,
        QUIRK_FRESH_SESSION_LOGIN = 1u << 3,
        QUIRK_EC_PARAMS_BY_NAME = 1u << 4,
        QUIRK_PIN_CHANGED = 1u << 5,
};

static const char *const quirk_names[] = {
        "no_eddsa",
        "no_copy",
        "copy_unsupported",
        "fresh_session_login",
        "ec_params_by_name",
        "pin_changed",
};

/* A session the application holds: alive, or killed by a fault (then every
 * use returns dead_rv, until the application closes it). */
struct session {
        CK_SESSION_HANDLE handle;
        CK_SLOT_ID slot;
        CK_RV dead_rv;           /* CKR_OK while alive */
        unsigned busy;           /* calls on it inside the real module now */
        bool close_pending;      /* killed while busy: closed underneath when idle */
        bool logged_in;          /* fresh_session_login: C_Login was called on it */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static CK_FUNCTION_LIST *real;
static void *real_dl;
static CK_FUNCTION_LIST wrapped;
static struct session sessions[SESSIONS_MAX];
static size_t nsessions;

static const char *control_path;
static char stats_path[4096];    /* "" without control_path */
static struct timespec control_mtime;
static ino_t control_ino;
static enum fault fault;
static unsigned latency_ms;
static unsigned quirks;          /* QUIRK_* */
static size_t session_cap;       /* 0: none */
static size_t sessions_opening;  /* C_OpenSession calls inside the real module */
static unsigned long signatures, faults_returned;
static size_t sessions_peak;
static unsigned long sessions_refused, copy_calls, copies_refused, mech_refused, logins, pins_refused, not_logged_in;
static unsigned long params_refused;
static bool hang_one_taken;
static bool stats_dirty;         /* counted since the file was last written */
static struct timespec stats_written, control_checked;

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* The moment ms from now, on the clock sleep_until() waits on. */
static struct timespec deadline_in(unsigned ms)
{
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_sec += ms / 1000;
        t.tv_nsec += (long) (ms % 1000) * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
        }
        return t;
}

/* An absolute deadline, so the time spent before it (the real module's
 * signing, a wait for the CPU) is part of the latency, not added to it. */
static void sleep_until(const struct timespec *deadline)
{
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, deadline, NULL) == EINTR)
                ;
}

static size_t sessions_live_locked(void)
{
        size_t n = 0;

        for (size_t i = 0; i < nsessions; i++)
                n += sessions[i].dead_rv == CKR_OK;
        return n;
}

static void stats_write_locked(void)
{
        char tmp[4200];
        FILE *f;

        if (!stats_path[0])
                return;
        snprintf(tmp, sizeof(tmp), "%s.%d", stats_path, (int) getpid());
        f = fopen(tmp, "w");
        if (!f)
                return;
        fprintf(f,
                "signatures=%lu\nfaults=%lu\nsessions=%zu\nsessions_live=%zu\nsessions_peak=%zu\n"
                "sessions_refused=%lu\ncopy_calls=%lu\ncopies_refused=%lu\nmech_refused=%lu\nlogins=%lu\n"
                "pins_refused=%lu\nnot_logged_in=%lu\nparams_refused=%lu\n",
                signatures, faults_returned, nsessions, sessions_live_locked(), sessions_peak, sessions_refused,
                copy_calls, copies_refused, mech_refused, logins, pins_refused, not_logged_in, params_refused);
        if (fclose(f) == 0)
                rename(tmp, stats_path);
        clock_gettime(CLOCK_MONOTONIC, &stats_written);
        stats_dirty = false;
}

static long ms_since(const struct timespec *then, const struct timespec *now);

/* A counter changed: written now, or by a later call when the file was
 * written less than STATS_EVERY_MS ago.  Lock held. */
static void stats_changed_locked(void)
{
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        if (ms_since(&stats_written, &now) < STATS_EVERY_MS) {
                stats_dirty = true;
                return;
        }
        stats_write_locked();
}

/* counter++ and stats_changed_locked(), taking the lock. */
static void count_up(unsigned long *counter)
{
        pthread_mutex_lock(&lock);
        (*counter)++;
        stats_changed_locked();
        pthread_mutex_unlock(&lock);
}

static void fault_counted_locked(void);

/* The application is logged out: so is every session. */
static void logins_clear_locked(void)
{
        for (size_t i = 0; i < nsessions; i++)
                sessions[i].logged_in = false;
}

/* Kill every live session: really close it underneath (once no call on
 * it is running), and remember the code its later uses get. */
static void sessions_kill_locked(CK_RV dead_rv)
{
        for (size_t i = 0; i < nsessions; i++) {
                if (sessions[i].dead_rv != CKR_OK)
                        continue;
                sessions[i].dead_rv = dead_rv;
                if (sessions[i].busy)
                        sessions[i].close_pending = true;
                else
                        real->C_CloseSession(sessions[i].handle);
        }
}

/* Apply a newly read fault: the edge-triggered part of each fault. */
static void fault_enter_locked(enum fault f)
{
        if (f == fault)
                return;
        switch (f) {
        case FAULT_SESSION_CLOSED:
                sessions_kill_locked(CKR_SESSION_CLOSED);
                break;
        case FAULT_SESSION_HANDLE_INVALID:
        case FAULT_TOKEN_NOT_PRESENT:
                sessions_kill_locked(CKR_SESSION_HANDLE_INVALID);
                break;
        case FAULT_USER_NOT_LOGGED_IN:
                for (size_t i = 0; i < nsessions; i++)
                        if (sessions[i].dead_rv == CKR_OK) {
                                if (real->C_Logout(sessions[i].handle) == CKR_OK)
                                        fault_counted_locked();
                                break;
                        }
                logins_clear_locked();
                break;
        default:
                break;
        }
        hang_one_taken = false;
        fault = f;
}

/* "a,b,c" as QUIRK_* bits; "none" is none. */
static unsigned quirks_parse(const char *v)
{
        unsigned q = 0;

        while (*v) {
                size_t len = strcspn(v, ",");
                bool known = len == 4 && strncmp(v, "none", 4) == 0;

                for (size_t i = 0; i < sizeof(quirk_names) / sizeof(quirk_names[0]) && !known; i++)
                        if (strlen(quirk_names[i]) == len && strncmp(v, quirk_names[i], len) == 0) {
                                q |= 1u << i;
                                known = true;
                        }
                if (!known && len > 0)
                        fprintf(stderr, "faultp11: unknown quirk '%.*s', ignored\n", (int) len, v);
                v += len;
                if (*v == ',')
                        v++;
        }
        return q;
}

static enum fault fault_parse(const char *v)
{
        for (size_t i = 0; i < sizeof(fault_names) / sizeof(fault_names[0]); i++)
                if (strcmp(v, fault_names[i]) == 0)
                        return (enum fault) i;
        fprintf(stderr, "faultp11: unknown fault '%s', ignored\n", v);
        return fault;
}

static long ms_since(const struct timespec *then, const struct timespec *now)
{
        return (now->tv_sec - then->tv_sec) * 1000 + (now->tv_nsec - then->tv_nsec) / 1000000;
}

/* Re-read the control file when it changed; look at most every
 * CONTROL_EVERY_MS, so the slow-HSM benchmark measures latency, not stat(). */
static void control_poll_locked(void)
{
        char line[256];
        struct timespec now;
        struct stat st;
        enum fault f = FAULT_NONE;
        unsigned lat = 0, q = 0;
        size_t cap = 0;
        FILE *file;

        clock_gettime(CLOCK_MONOTONIC, &now);
        if (stats_dirty && control_path && ms_since(&stats_written, &now) >= STATS_EVERY_MS)
                stats_write_locked();
        if (control_checked.tv_sec && ms_since(&control_checked, &now) < CONTROL_EVERY_MS)
                return;
        control_checked = now;
        if (!control_path || stat(control_path, &st) < 0)
                return;
        if (st.st_ino == control_ino && st.st_mtim.tv_sec == control_mtime.tv_sec &&
            st.st_mtim.tv_nsec == control_mtime.tv_nsec)
                return;
        file = fopen(control_path, "r");
        if (!file)
                return;
        control_ino = st.st_ino;
        control_mtime = st.st_mtim;
        while (fgets(line, sizeof(line), file)) {
                char key[64], value[128];

                if (sscanf(line, " %63[a-z_] = %127s", key, value) != 2)
                        continue;
                if (strcmp(key, "fault") == 0)
                        f = fault_parse(value);
                else if (strcmp(key, "latency_ms") == 0)
                        lat = (unsigned) strtoul(value, NULL, 10);
                else if (strcmp(key, "quirks") == 0)
                        q = quirks_parse(value);
                else if (strcmp(key, "session_cap") == 0)
                        cap = (size_t) strtoul(value, NULL, 10);
        }
        fclose(file);
        latency_ms = lat;
        quirks = q;
        session_cap = cap;
        fault_enter_locked(f);
        stats_write_locked();
}

/* The quirks now (the control file polled). */
static unsigned quirks_now(void)
{
        unsigned q;

        pthread_mutex_lock(&lock);
        control_poll_locked();
        q = quirks;
        pthread_mutex_unlock(&lock);
        return q;
}

static enum fault fault_now(unsigned *ret_latency)
{
        enum fault f;

        pthread_mutex_lock(&lock);
        control_poll_locked();
        f = fault;
        if (ret_latency)
                *ret_latency = latency_ms;
        pthread_mutex_unlock(&lock);
        return f;
}

/* Lock held. */
static void fault_counted_locked(void)
{
        faults_returned++;
        stats_changed_locked();
}

static CK_RV count_fault(CK_RV rv)
{
        pthread_mutex_lock(&lock);
        fault_counted_locked();
        pthread_mutex_unlock(&lock);
        return rv;
}

/* Block while the fault is "hang". */
static void hang_while_set(void)
{
        if (fault_now(NULL) != FAULT_HANG)
                return;
        count_fault(CKR_OK);
        while (fault_now(NULL) == FAULT_HANG)
                sleep_ms(POLL_MS);
}

static struct session *session_find_locked(CK_SESSION_HANDLE h)
{
        for (size_t i = 0; i < nsessions; i++)
                if (sessions[i].handle == h)
                        return &sessions[i];
        return NULL;
}

/* Before a call on session h: CKR_OK when the session may be used now
 * (it is then busy until session_leave), else the code to return. */
static CK_RV session_enter(CK_SESSION_HANDLE h)
{
        struct session *s;
        CK_RV rv = CKR_OK;

        pthread_mutex_lock(&lock);
        control_poll_locked();
        s = session_find_locked(h);
        if (fault == FAULT_TOKEN_NOT_PRESENT)
                rv = CKR_DEVICE_REMOVED;
        else if (s && s->dead_rv != CKR_OK)
                rv = s->dead_rv;
        if (rv != CKR_OK)
                fault_counted_locked();
        else if (s)
                s->busy++;
        pthread_mutex_unlock(&lock);
        return rv;
}

/* After the call: a session killed meanwhile is closed underneath now.
 * (Its handle names no other session: the module keeps it until then.) */
static void session_leave(CK_SESSION_HANDLE h)
{
        struct session *s;

        pthread_mutex_lock(&lock);
        s = session_find_locked(h);
        if (s && s->busy > 0 && --s->busy == 0 && s->close_pending) {
                s->close_pending = false;
                real->C_CloseSession(h);
        }
        pthread_mutex_unlock(&lock);
}

/* The real call, made on session h only while it may be used. */
#define ON_SESSION(h, call)                             \
        do {                                            \
                CK_RV rv_ = session_enter(h);           \
                                                        \
                if (rv_ != CKR_OK)                      \
                        return rv_;                     \
                rv_ = (call);                           \
                session_leave(h);                       \
                return rv_;                             \
        } while (0)

/* ---- the wrapped functions ---- */

static CK_RV w_Initialize(CK_VOID_PTR args)
{
        return real->C_Initialize(args);
}

static CK_RV w_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
        if (present && fault_now(NULL) == FAULT_TOKEN_NOT_PRESENT) {
                if (!count)
                        return CKR_ARGUMENTS_BAD;
                *count = 0;
                return CKR_OK;
        }
        return real->C_GetSlotList(present, list, count);
}

static CK_RV w_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
        if (fault_now(NULL) == FAULT_TOKEN_NOT_PRESENT)
                return count_fault(CKR_TOKEN_NOT_PRESENT);
        return real->C_GetTokenInfo(slot, info);
}

/* Whether the application is logged in, as the real module says on
 * session h. */
static bool real_logged_in(CK_SESSION_HANDLE h)
{
        CK_SESSION_INFO info;

        return real->C_GetSessionInfo(h, &info) == CKR_OK &&
               (info.state == CKS_RO_USER_FUNCTIONS || info.state == CKS_RW_USER_FUNCTIONS);
}

static CK_RV w_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                           CK_SESSION_HANDLE_PTR ret)
{
        bool fresh_login;
        size_t live;
        enum fault f;
        CK_RV rv;

        hang_while_set();
        f = fault_now(NULL);
        if (f == FAULT_TOKEN_NOT_PRESENT)
                return count_fault(CKR_TOKEN_NOT_PRESENT);
        /* The cap counts the sessions being opened too, so two threads
         * never both take the last one. */
        pthread_mutex_lock(&lock);
        live = sessions_live_locked() + sessions_opening;
        if (session_cap && live >= session_cap) {
                sessions_refused++;
                stats_changed_locked();
                pthread_mutex_unlock(&lock);
                return CKR_SESSION_COUNT;
        }
        sessions_opening++;
        fresh_login = quirks & QUIRK_FRESH_SESSION_LOGIN;
        pthread_mutex_unlock(&lock);
        rv = real->C_OpenSession(slot, flags, app, notify, ret);
        pthread_mutex_lock(&lock);
        sessions_opening--;
        if (rv == CKR_OK) {
                /* The module may reuse a closed handle's number. */
                struct session *s = session_find_locked(*ret);

                if (!s && nsessions < SESSIONS_MAX)
                        s = &sessions[nsessions++];
                /* Per application, a new session shares the login; per
                 * session, it starts without one. */
                if (s)
                        *s = (struct session) { .handle = *ret, .slot = slot, .dead_rv = CKR_OK,
                                                .logged_in = !fresh_login && real_logged_in(*ret) };
                live = sessions_live_locked();
                if (live > sessions_peak) {
                        sessions_peak = live;
                        stats_changed_locked();
                }
        }
        pthread_mutex_unlock(&lock);
        return rv;
}

static CK_RV w_CloseSession(CK_SESSION_HANDLE h)
{
        struct session *s;
        CK_RV rv = CKR_OK;
        bool dead;

        pthread_mutex_lock(&lock);
        s = session_find_locked(h);
        dead = s && s->dead_rv != CKR_OK;
        if (s && s->busy) {
                /* Another thread's call on it is still running: closed
                 * underneath when that returns, as a killed one is. */
                rv = dead ? s->dead_rv : CKR_OK;
                s->dead_rv = dead ? s->dead_rv : CKR_SESSION_HANDLE_INVALID;
                s->close_pending = true;
                pthread_mutex_unlock(&lock);
                return rv;
        }
        if (s) {
                if (dead)
                        rv = s->dead_rv;
                *s = sessions[--nsessions];
        }
        pthread_mutex_unlock(&lock);
        return dead ? rv : real->C_CloseSession(h);
}

static CK_RV w_CloseAllSessions(CK_SLOT_ID slot)
{
        pthread_mutex_lock(&lock);
        for (size_t i = 0; i < nsessions;) {
                if (sessions[i].slot == slot)
                        sessions[i] = sessions[--nsessions];
                else
                        i++;
        }
        pthread_mutex_unlock(&lock);
        return real->C_CloseAllSessions(slot);
}

/* fresh_session_login is on and session h has not logged in itself. */
static bool session_not_logged_in(CK_SESSION_HANDLE h)
{
        struct session *s;
        bool r;

        pthread_mutex_lock(&lock);
        control_poll_locked();
        s = session_find_locked(h);
        r = (quirks & QUIRK_FRESH_SESSION_LOGIN) && s && !s->logged_in;
        pthread_mutex_unlock(&lock);
        return r;
}

static CK_RV w_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
        CK_RV rv = session_enter(h);

        if (rv != CKR_OK)
                return rv;
        rv = real->C_GetSessionInfo(h, info);
        session_leave(h);
        if (rv == CKR_OK && session_not_logged_in(h)) {
                if (info->state == CKS_RO_USER_FUNCTIONS)
                        info->state = CKS_RO_PUBLIC_SESSION;
                else if (info->state == CKS_RW_USER_FUNCTIONS)
                        info->state = CKS_RW_PUBLIC_SESSION;
        }
        return rv;
}

static CK_RV w_Login(CK_SESSION_HANDLE h, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
        CK_RV rv = session_enter(h);

        if (rv != CKR_OK)
                return rv;
        if (type == CKU_USER && (quirks_now() & QUIRK_PIN_CHANGED)) {
                session_leave(h);
                pthread_mutex_lock(&lock);
                logins++;
                pins_refused++;
                stats_changed_locked();
                pthread_mutex_unlock(&lock);
                return CKR_PIN_INCORRECT;
        }
        rv = real->C_Login(h, type, pin, len);
        session_leave(h);
        pthread_mutex_lock(&lock);
        logins++;
        if (type == CKU_USER && (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)) {
                struct session *s = session_find_locked(h);

                /* Per session, only this one; per application, every one. */
                if (quirks & QUIRK_FRESH_SESSION_LOGIN) {
                        if (s)
                                s->logged_in = true;
                } else {
                        for (size_t i = 0; i < nsessions; i++)
                                sessions[i].logged_in = true;
                }
        }
        stats_changed_locked();
        pthread_mutex_unlock(&lock);
        return rv;
}

static CK_RV w_Logout(CK_SESSION_HANDLE h)
{
        CK_RV rv = session_enter(h);

        if (rv != CKR_OK)
                return rv;
        rv = real->C_Logout(h);
        session_leave(h);
        if (rv == CKR_OK) {
                pthread_mutex_lock(&lock);
                logins_clear_locked();
                pthread_mutex_unlock(&lock);
        }
        return rv;
}

static CK_RV w_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
        ON_SESSION(h, real->C_GetAttributeValue(h, o, t, n));
}

static CK_RV w_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
        ON_SESSION(h, real->C_FindObjectsInit(h, t, n));
}

static CK_RV w_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR count)
{
        ON_SESSION(h, real->C_FindObjects(h, o, max, count));
}

static CK_RV w_FindObjectsFinal(CK_SESSION_HANDLE h)
{
        ON_SESSION(h, real->C_FindObjectsFinal(h));
}

/* What no_copy and copy_unsupported make of a C_CopyObject of o on the
 * live session h: CKR_OK when it goes on to the real module. */
static CK_RV copy_quirk(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
        CK_OBJECT_CLASS cls = 0;
        CK_ATTRIBUTE a = { CKA_CLASS, &cls, sizeof(cls) };
        unsigned q = quirks_now();

        if (q & QUIRK_COPY_UNSUPPORTED)
                return CKR_FUNCTION_NOT_SUPPORTED;
        if ((q & QUIRK_NO_COPY) && real->C_GetAttributeValue(h, o, &a, 1) == CKR_OK && cls == CKO_PRIVATE_KEY)
                return CKR_ACTION_PROHIBITED;
        return CKR_OK;
}

static CK_RV w_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                          CK_OBJECT_HANDLE_PTR ret)
{
        CK_RV rv = session_enter(h);

        if (rv != CKR_OK)
                return rv;
        count_up(&copy_calls);
        rv = copy_quirk(h, o);
        if (rv == CKR_OK)
                rv = real->C_CopyObject(h, o, t, n, ret);
        else
                count_up(&copies_refused);
        session_leave(h);
        return rv;
}

static CK_RV w_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
        ON_SESSION(h, real->C_DestroyObject(h, o));
}

/* A mechanism no_eddsa hides. */
static bool mech_hidden(CK_MECHANISM_TYPE m)
{
        return (m == CKM_EDDSA || m == CKM_EC_EDWARDS_KEY_PAIR_GEN) && (quirks_now() & QUIRK_NO_EDDSA);
}

static CK_RV w_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count_ret)
{
        CK_MECHANISM_TYPE *all;
        CK_ULONG n = 0, kept = 0;
        CK_RV rv;

        if (!(quirks_now() & QUIRK_NO_EDDSA))
                return real->C_GetMechanismList(slot, list, count_ret);
        if (!count_ret)
                return CKR_ARGUMENTS_BAD;
        rv = real->C_GetMechanismList(slot, NULL, &n);
        if (rv != CKR_OK)
                return rv;
        all = calloc(n ? n : 1, sizeof(*all));
        if (!all)
                return CKR_HOST_MEMORY;
        rv = real->C_GetMechanismList(slot, all, &n);
        for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++)
                if (all[i] != CKM_EDDSA && all[i] != CKM_EC_EDWARDS_KEY_PAIR_GEN)
                        all[kept++] = all[i];
        if (rv == CKR_OK && list && *count_ret < kept)
                rv = CKR_BUFFER_TOO_SMALL;
        else if (rv == CKR_OK && list)
                memcpy(list, all, kept * sizeof(*all));
        if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
                *count_ret = kept;
        free(all);
        return rv;
}

static CK_RV w_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE m, CK_MECHANISM_INFO_PTR info)
{
        if (mech_hidden(m)) {
                count_up(&mech_refused);
                return CKR_MECHANISM_INVALID;
        }
        return real->C_GetMechanismInfo(slot, m, info);
}

/* ec_params_by_name: a template naming Ed25519 by its OID is refused;
 * one naming it by "edwards25519" goes underneath as the OID (in copy,
 * which holds at most TEMPLATE_MAX attributes). */
#define TEMPLATE_MAX 64
static const uint8_t ed_oid[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
static const uint8_t ed_name[] = { 0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9' };

static CK_RV ec_params_quirk(CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_ATTRIBUTE copy[TEMPLATE_MAX], CK_ATTRIBUTE_PTR *ret)
{
        *ret = t;
        if (!(quirks_now() & QUIRK_EC_PARAMS_BY_NAME) || !t || n > TEMPLATE_MAX)
                return CKR_OK;
        for (CK_ULONG i = 0; i < n; i++) {
                if (t[i].type != CKA_EC_PARAMS)
                        continue;
                if (t[i].ulValueLen == sizeof(ed_oid) && memcmp(t[i].pValue, ed_oid, sizeof(ed_oid)) == 0) {
                        count_up(&params_refused);
                        return CKR_ATTRIBUTE_VALUE_INVALID;
                }
                if (t[i].ulValueLen == sizeof(ed_name) && memcmp(t[i].pValue, ed_name, sizeof(ed_name)) == 0) {
                        memcpy(copy, t, n * sizeof(*t));
                        copy[i].pValue = (void *) ed_oid;
                        copy[i].ulValueLen = sizeof(ed_oid);
                        *ret = copy;
                }
        }
        return CKR_OK;
}

static CK_RV w_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub, CK_ULONG npub,
                               CK_ATTRIBUTE_PTR priv, CK_ULONG npriv, CK_OBJECT_HANDLE_PTR ret_pub,
                               CK_OBJECT_HANDLE_PTR ret_priv)
{
        CK_ATTRIBUTE pub_copy[TEMPLATE_MAX], priv_copy[TEMPLATE_MAX];
        CK_RV rv;

        if (mech && mech_hidden(mech->mechanism)) {
                count_up(&mech_refused);
                return CKR_MECHANISM_INVALID;
        }
        rv = ec_params_quirk(pub, npub, pub_copy, &pub);
        if (rv == CKR_OK)
                rv = ec_params_quirk(priv, npriv, priv_copy, &priv);
        if (rv != CKR_OK)
                return rv;
        ON_SESSION(h, real->C_GenerateKeyPair(h, mech, pub, npub, priv, npriv, ret_pub, ret_priv));
}

static CK_RV w_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR ret)
{
        CK_ATTRIBUTE copy[TEMPLATE_MAX];
        CK_RV rv = ec_params_quirk(t, n, copy, &t);

        if (rv != CKR_OK)
                return rv;
        ON_SESSION(h, real->C_CreateObject(h, t, n, ret));
}

static CK_RV w_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
        CK_RV rv;

        hang_while_set();
        rv = session_enter(h);
        if (rv != CKR_OK)
                return rv;
        if (fault_now(NULL) == FAULT_DEVICE_ERROR) {
                rv = count_fault(CKR_DEVICE_ERROR);
        } else if (mech && mech_hidden(mech->mechanism)) {
                count_up(&mech_refused);
                rv = CKR_MECHANISM_INVALID;
        } else if (session_not_logged_in(h)) {
                count_up(&not_logged_in);
                rv = CKR_USER_NOT_LOGGED_IN;
        } else {
                rv = real->C_SignInit(h, mech, key);
        }
        session_leave(h);
        return rv;
}

/* Block the first C_Sign after "hang_one" is set until it is cleared. */
static void hang_one_if_first(void)
{
        pthread_mutex_lock(&lock);
        control_poll_locked();
        if (fault != FAULT_HANG_ONE || hang_one_taken) {
                pthread_mutex_unlock(&lock);
                return;
        }
        hang_one_taken = true;
        fault_counted_locked();
        pthread_mutex_unlock(&lock);
        while (fault_now(NULL) == FAULT_HANG_ONE)
                sleep_ms(POLL_MS);
}

/* The real C_Sign, with fault f applied to it. */
static CK_RV sign_faulted(enum fault f, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                          CK_ULONG_PTR sig_len)
{
        CK_RV rv;

        if (f == FAULT_DEVICE_ERROR) {
                /* A failed C_Sign ends the operation (PKCS#11 2.40 5.2). */
                CK_BYTE scratch[1024];
                CK_ULONG n = sizeof(scratch);

                real->C_Sign(h, data, len, scratch, &n);
                return count_fault(CKR_DEVICE_ERROR);
        }
        rv = real->C_Sign(h, data, len, sig, sig_len);
        if (rv != CKR_OK || !sig)
                return rv;
        pthread_mutex_lock(&lock);
        signatures++;
        if (f == FAULT_CORRUPT && *sig_len > 0) {
                sig[*sig_len / 2] ^= 0x01;
                fault_counted_locked();
        }
        pthread_mutex_unlock(&lock);
        return CKR_OK;
}

static CK_RV w_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
        struct timespec deadline;
        unsigned latency;
        enum fault f;
        CK_RV rv;

        hang_while_set();
        hang_one_if_first();
        rv = session_enter(h);
        if (rv != CKR_OK)
                return rv;
        f = fault_now(&latency);
        /* A network HSM answers latency ms after it was asked: its own
         * signing time is inside that, so the real module's is too. */
        deadline = deadline_in(latency);
        rv = sign_faulted(f, h, data, len, sig, sig_len);
        session_leave(h);
        if (latency)
                sleep_until(&deadline);
        return rv;
}

static CK_RV w_Finalize(CK_VOID_PTR reserved)
{
        pthread_mutex_lock(&lock);
        stats_write_locked();
        nsessions = 0;
        pthread_mutex_unlock(&lock);
        return real->C_Finalize(reserved);
}

static CK_RV w_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret);

static CK_RV load_real(void)
{
        CK_C_GetFunctionList get;
        const char *path = getenv("FAULTP11_MODULE");

        if (real)
                return CKR_OK;
        if (!path || !*path)
                path = FAULTP11_DEFAULT_MODULE;
        real_dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!real_dl) {
                fprintf(stderr, "faultp11: cannot load %s: %s\n", path, dlerror());
                return CKR_GENERAL_ERROR;
        }
        get = (CK_C_GetFunctionList) dlsym(real_dl, "C_GetFunctionList");
        if (!get || get(&real) != CKR_OK || !real) {
                fprintf(stderr, "faultp11: %s has no usable C_GetFunctionList\n", path);
                real = NULL;
                return CKR_GENERAL_ERROR;
        }
        control_path = getenv("FAULTP11_CONTROL");
        if (control_path && !*control_path)
                control_path = NULL;
        if (control_path) {
                const char *stats = getenv("FAULTP11_STATS");

                if (stats && *stats)
                        snprintf(stats_path, sizeof(stats_path), "%s", stats);
                else if (snprintf(stats_path, sizeof(stats_path), "%s.stats", control_path) >=
                         (int) sizeof(stats_path))
                        stats_path[0] = '\0';
        }
        wrapped = *real;
        wrapped.C_Initialize = w_Initialize;
        wrapped.C_Finalize = w_Finalize;
        wrapped.C_GetFunctionList = w_GetFunctionList;
        wrapped.C_GetSlotList = w_GetSlotList;
        wrapped.C_GetTokenInfo = w_GetTokenInfo;
        wrapped.C_OpenSession = w_OpenSession;
        wrapped.C_CloseSession = w_CloseSession;
        wrapped.C_CloseAllSessions = w_CloseAllSessions;
        wrapped.C_GetSessionInfo = w_GetSessionInfo;
        wrapped.C_Login = w_Login;
        wrapped.C_Logout = w_Logout;
        wrapped.C_GetAttributeValue = w_GetAttributeValue;
        wrapped.C_FindObjectsInit = w_FindObjectsInit;
        wrapped.C_FindObjects = w_FindObjects;
        wrapped.C_FindObjectsFinal = w_FindObjectsFinal;
        wrapped.C_CopyObject = w_CopyObject;
        wrapped.C_GetMechanismList = w_GetMechanismList;
        wrapped.C_GetMechanismInfo = w_GetMechanismInfo;
        wrapped.C_GenerateKeyPair = w_GenerateKeyPair;
        wrapped.C_CreateObject = w_CreateObject;
        wrapped.C_DestroyObject = w_DestroyObject;
        wrapped.C_SignInit = w_SignInit;
        wrapped.C_Sign = w_Sign;
        return CKR_OK;
}

static CK_RV w_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
        CK_RV rv;

        if (!ret)
                return CKR_ARGUMENTS_BAD;
        pthread_mutex_lock(&lock);
        rv = load_real();
        pthread_mutex_unlock(&lock);
        if (rv != CKR_OK)
                return rv;
        *ret = &wrapped;
        return CKR_OK;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret) __attribute__((visibility("default")));
CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
        return w_GetFunctionList(ret);
}
