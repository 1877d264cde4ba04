/* retry_after: see retry_after.h. Dates are taken apart by hand rather than
 * with strptime(3), whose month and day names follow the locale; HTTP's are
 * always English. Two-digit RFC 850 years are read as in RFC 9110: a year
 * that would lie more than 50 years ahead is in the previous century. */
#include "retry_after.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

static const char *const months[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const wdays[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const wdays_long[7] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};

struct cursor {
        const char *p, *end;
};

static bool lit(struct cursor *c, const char *s)
{
        size_t n = strlen(s);

        if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
                return false;
        c->p += n;
        return true;
}

/* Exactly n digits (n <= 4). */
static bool digits(struct cursor *c, int n, int *ret)
{
        int v = 0;

        if (c->end - c->p < n)
                return false;
        for (int i = 0; i < n; i++) {
                if (c->p[i] < '0' || c->p[i] > '9')
                        return false;
                v = v * 10 + (c->p[i] - '0');
        }
        c->p += n;
        *ret = v;
        return true;
}

/* One of n names, case-sensitive as HTTP writes them; *ret is its index. */
static bool name(struct cursor *c, const char *const *names, int n, int *ret)
{
        for (int i = 0; i < n; i++)
                if (lit(c, names[i])) {
                        *ret = i;
                        return true;
                }
        return false;
}

static bool hms(struct cursor *c, struct tm *tm)
{
        return digits(c, 2, &tm->tm_hour) && lit(c, ":") && digits(c, 2, &tm->tm_min) && lit(c, ":") &&
               digits(c, 2, &tm->tm_sec);
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" */
static bool imf_fixdate(struct cursor c, struct tm *tm)
{
        int wd;

        return name(&c, wdays, 7, &wd) && lit(&c, ", ") && digits(&c, 2, &tm->tm_mday) && lit(&c, " ") &&
               name(&c, months, 12, &tm->tm_mon) && lit(&c, " ") && digits(&c, 4, &tm->tm_year) && lit(&c, " ") &&
               hms(&c, tm) && lit(&c, " GMT") && c.p == c.end;
}

/* "Sunday, 06-Nov-94 08:49:37 GMT" */
static bool rfc850(struct cursor c, struct tm *tm, int now_year)
{
        int wd;

        if (!(name(&c, wdays_long, 7, &wd) && lit(&c, ", ") && digits(&c, 2, &tm->tm_mday) && lit(&c, "-") &&
              name(&c, months, 12, &tm->tm_mon) && lit(&c, "-") && digits(&c, 2, &tm->tm_year) && lit(&c, " ") &&
              hms(&c, tm) && lit(&c, " GMT") && c.p == c.end))
                return false;
        tm->tm_year += now_year - now_year % 100;
        if (tm->tm_year > now_year + 50)
                tm->tm_year -= 100;
        return true;
}

/* "Sun Nov  6 08:49:37 1994" (day space-padded) */
static bool asctime_date(struct cursor c, struct tm *tm)
{
        int wd;

        if (!(name(&c, wdays, 7, &wd) && lit(&c, " ") && name(&c, months, 12, &tm->tm_mon) && lit(&c, " ")))
                return false;
        if (c.p < c.end && *c.p == ' ') {
                c.p++;
                if (!digits(&c, 1, &tm->tm_mday))
                        return false;
        } else if (!digits(&c, 2, &tm->tm_mday)) {
                return false;
        }
        return lit(&c, " ") && hms(&c, tm) && lit(&c, " ") && digits(&c, 4, &tm->tm_year) && c.p == c.end;
}

static bool plausible(const struct tm *tm)
{
        static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

        return tm->tm_year >= 1900 && tm->tm_mday >= 1 && tm->tm_mday <= mdays[tm->tm_mon] && tm->tm_hour <= 23 &&
               tm->tm_min <= 59 && tm->tm_sec <= 60;
}

int retry_after_parse(const char *value, size_t len, time_t now, uint64_t *ret_usec)
{
        struct cursor c = {value, value + len};
        struct tm tm, now_tm;
        uint64_t sec = 0;
        time_t t;

        if (!value || len > RETRY_AFTER_MAX_LEN)
                return -EINVAL;
        while (c.p < c.end && (*c.p == ' ' || *c.p == '\t'))
                c.p++;
        while (c.end > c.p && (c.end[-1] == ' ' || c.end[-1] == '\t' || c.end[-1] == '\r' || c.end[-1] == '\n'))
                c.end--;
        if (c.p == c.end)
                return -EINVAL;
        if (*c.p >= '0' && *c.p <= '9') {
                for (; c.p < c.end; c.p++) {
                        if (*c.p < '0' || *c.p > '9')
                                return -EINVAL;
                        if (sec < RETRY_AFTER_MAX_SEC) /* stop growing once capped: no overflow */
                                sec = sec * 10 + (uint64_t)(*c.p - '0');
                }
                if (sec > RETRY_AFTER_MAX_SEC)
                        sec = RETRY_AFTER_MAX_SEC;
                *ret_usec = sec * 1000000;
                return 0;
        }
        memset(&tm, 0, sizeof tm);
        if (!gmtime_r(&now, &now_tm))
                return -EINVAL;
        if (!imf_fixdate(c, &tm) && !rfc850(c, &tm, now_tm.tm_year + 1900) && !asctime_date(c, &tm))
                return -EINVAL;
        if (!plausible(&tm))
                return -EINVAL;
        tm.tm_year -= 1900;
        tm.tm_isdst = 0;
        t = timegm(&tm);
        if (t == (time_t)-1)
                return -EINVAL;
        if (t > now)
                sec = (uint64_t)(t - now) > RETRY_AFTER_MAX_SEC ? RETRY_AFTER_MAX_SEC : (uint64_t)(t - now);
        *ret_usec = sec * 1000000;
        return 0;
}
