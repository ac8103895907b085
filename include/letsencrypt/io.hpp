// The io core: rings, tasks, operations, scopes, shards.
#pragma once

#include "letsencrypt/io/buffer_pool.hpp"
#include "letsencrypt/io/event.hpp"
#include "letsencrypt/io/net.hpp"
#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/io/scope.hpp"
#include "letsencrypt/io/shard.hpp"
#include "letsencrypt/io/stream.hpp"
#include "letsencrypt/io/task.hpp"
#include "letsencrypt/io/unique_fd.hpp"
