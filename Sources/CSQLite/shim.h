// The session extension and the pre-update hook are compiled into Debian's libsqlite3, but
// sqlite3.h only declares them when these macros are set before it is included.
#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <sqlite3.h>
