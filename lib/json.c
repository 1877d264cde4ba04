/* json: see json.h. cJSON's add functions leave the item with the caller
 * when they fail (allocating the key copy), which makes the usual
 * "add(o, k, build())" leak on allocation failure; this closes that gap. */
#include "json.h"

#include <errno.h>

int json_add(cJSON *o, const char *key, cJSON *item)
{
        cJSON_bool ok;

        if (!item)
                return -ENOMEM;
        ok = o && (key ? cJSON_AddItemToObject(o, key, item) : cJSON_AddItemToArray(o, item));
        if (!ok) {
                cJSON_Delete(item);
                return -ENOMEM;
        }
        return 0;
}
