# frozen_string_literal: true

module Iodine
  module Base
    # The `iodine` command line, facil.io style: `-flag value`, `-flag=value` or `-flagvalue`
    # (the longest registered flag wins), plus `--flag` long forms. Fills DEFAULT_SETTINGS,
    # Iodine.threads/workers and the verbosity.
    module CLI
      # [names, type, key, help]; type is :int, :string or :bool.
      FLAGS = [
        [%w[-bind -b -address], :string, :address, "Address to bind to (a path starting with / or ./ is a Unix socket)."],
        [%w[-port -p], :int, :port, "Port to listen on (default: $PORT or 3000)."],
        [%w[-threads -t], :int, :threads, "Ruby threads per worker (negative = cores / n; default: $THREADS or auto)."],
        [%w[-workers -w], :int, :workers, "Worker processes (default: $WEB_CONCURRENCY / $WORKERS or auto)."],
        [%w[-public -www], :string, :public, "Public folder for static files."],
        [%w[-keep-alive -k -tout], :int, :timeout, "HTTP keep-alive timeout in seconds (1..255, default 40)."],
        [%w[-log -v], :bool, :log, "Log every HTTP request."],
        [%w[-max-body -maxbd], :int, :max_body, "Largest request body in MiB (default 50)."],
        [%w[-max-header -maxhd], :int, :max_headers, "Largest request head in KiB (default 32)."],
        [%w[-max-msg -maxms], :int, :max_msg, "Largest WebSocket message in KiB (default 256)."],
        [%w[-max-clients -maxcl], :int, :max_clients, "Most concurrent connections per listener; more get a 503 (default: open-files limit - 64)."],
        [%w[-head-timeout -htout], :int, :head_timeout, "Seconds a client may take to send a request head (default 20)."],
        [%w[-body-timeout -btout], :int, :body_timeout, "Seconds a request body may take, plus 1 s per min-rate KiB received (default 30)."],
        [%w[-min-rate], :int, :min_upload_rate, "Slowest upload accepted, in KiB/s (default 4; 0 = no minimum)."],
        [%w[-metrics], :string, :metrics, "Serve Iodine.stats as Prometheus text on this path (e.g. /metrics), before the app."],
        [%w[-max-streams], :int, :max_streams, "Most HTTP/2 streams a connection may have open at once (default 100)."],
        [%w[-ping], :int, :ping, "WebSocket/SSE ping interval in seconds (1..255, default 40)."],
        [%w[-tls], :bool, :tls_self, "Serve TLS with a self-signed certificate."],
        [%w[-tls-cert -cert], :string, :tls_cert, "TLS certificate file (PEM)."],
        [%w[-tls-key -key], :string, :tls_key, "TLS private key file (PEM)."],
        [%w[-tls-pass -tls-password], :string, :tls_pass, "TLS private key password."],
        [%w[-redis -r], :string, :redis, "Redis URL for pub/sub (default: $IODINE_REDIS_URL)."],
        [%w[-redis-ping -rp], :int, :redis_ping, "Redis ping interval in seconds (0..255)."],
        [%w[-config -C], :string, :conf_, "Ruby file to require before loading the app."],
        [%w[-pid -pidfile], :string, :pid_, "Write the master's pid to this file."],
        [%w[-verbosity -V], :int, :verbosity, "Log level 0..5 (0 none, 4 info = default, 5 debug)."],
        [%w[-warmup -preload --preload], :bool, :warmup, "Warm the app up before serving: load its autoloaded constants, then answer one GET / (in the master, before forking)."]
      ].freeze
      HELP_FLAGS = %w[-? -h -help --help].freeze
      VERSION_FLAGS = %w[--version -version].freeze

      # A command-line mistake: the message is shown with a pointer to the help.
      class Error < StandardError; end

      module_function

      # Parses argv (and the THREADS/WORKERS/WEB_CONCURRENCY/PORT environment); exits for
      # help (0) and errors (1) with a message, never a backtrace.
      def parse(argv)
        values, positional = scan(argv.dup)
        apply(values, positional)
      rescue Error, RangeError, ArgumentError, TypeError => e
        fail_with(e.message)
      end

      # Prints `message` as the command line's error and exits 1.
      def fail_with(message)
        warn "Error: #{message}"
        warn "Run `iodine -?` for the list of options."
        exit 1
      end

      # Splits argv into {key => value} and positional arguments.
      def scan(args)
        values = {}
        positional = []
        until args.empty?
          arg = args.shift
          if HELP_FLAGS.include?(arg.downcase)
            puts help
            exit 0
          end
          if VERSION_FLAGS.include?(arg)
            puts "iodine #{Iodine::VERSION} (Rust edition) on Ruby #{RUBY_VERSION}"
            exit 0
          end
          if arg == "--"
            positional.concat(args)
            break
          end
          unless arg.start_with?("-") && arg.length > 1 && arg !~ /\A-\d/
            positional << arg
            next
          end
          names, type, key, value = match(arg)
          raise Error, "unknown argument #{arg}" unless key

          values[key] = read_value(names, type, value, args)
        end
        [values, positional]
      end

      # The registered flag `arg` names: exact (`-p`, `--port`), `-flag=value`, or the
      # longest registered prefix (`-p3000`).
      def match(arg)
        flag = arg.sub(/\A--(?=[a-z])/i, "-")
        name, eq, rest = flag.partition("=")
        raw = arg.partition("=").first
        # A registered flag is never split by the prefix rule (`--preload` is not `-p reload`).
        FLAGS.each do |names, type, key, _|
          return [names, type, key, eq.empty? ? nil : rest] if names.include?(name) || names.include?(raw)
        end
        best = nil
        FLAGS.each do |names, type, key, _|
          names.each do |n|
            next unless type != :bool && flag.start_with?(n) && flag.length > n.length
            best = [names, type, key, flag[n.length..], n.length] if best.nil? || n.length > best[4]
          end
        end
        best&.first(4)
      end

      def read_value(names, type, value, args)
        if type == :bool
          raise Error, "#{names.first} takes no value" if value

          return true
        end
        value = args.shift if value.nil?
        raise Error, "#{names.first} needs a value" if value.nil?
        if type == :int
          raise Error, "#{names.first} needs a number, got #{value.inspect}" unless value.match?(/\A[+-]?\d+\z/)

          value = value.to_i
        end
        value
      end

      def apply(values, positional)
        s = Iodine::DEFAULT_SETTINGS
        values.each do |key, value|
          case key
          when :threads, :workers, :verbosity then nil
          when :port
            raise Error, "-port must be a number from 0 to 65535, got #{value}" unless (0..65_535).cover?(value)

            s[:port] = value.to_s
          when :tls_self, :tls_cert, :tls_key, :tls_pass then nil
          when :redis, :redis_ping then nil
          else s[key] = value
          end
        end
        if s[:address].to_s.start_with?("/", "./")
          Base.log(3, "a Unix socket address ignores the port #{s[:port]}") if values[:port].to_i.positive?
          s[:port] = "0"
        end
        threads = values[:threads] || env_int("THREADS", strict: true)
        workers = values[:workers] || env_int("WEB_CONCURRENCY", strict: true) || env_int("WORKERS", strict: true)
        Iodine.threads = threads if threads
        Iodine.workers = workers if workers
        Iodine.verbosity = values[:verbosity] if values[:verbosity]
        s[:filename_] = positional.first if positional.first
        tls(values)
        redis(values)
      end

      # `-tls` (a self-signed certificate for this machine's name), or `-tls-cert` and
      # `-tls-key` (with `-tls-pass` for an encrypted key): the TLS of every listener. Only
      # one of the two files: an error line, then a self-signed certificate (as the C gem).
      # A file that can't be used is an ArgumentError (one `Error:` line, exit 1).
      def tls(values)
        cert, key = values.values_at(:tls_cert, :tls_key)
        return unless values[:tls_self] || cert || key

        if cert.nil? ^ key.nil?
          Base.log(2, "TLS needs both -tls-cert and -tls-key; using a self-signed certificate")
          cert = key = nil
        end
        Iodine::DEFAULT_SETTINGS[:tls] = Iodine::TLS.new(Listen.host_name, cert, key, values[:tls_pass])
      end

      # `-r URL` (or $IODINE_REDIS_URL) and `-rp N`: a Redis engine, made the default.
      def redis(values)
        url = values[:redis] || ENV["IODINE_REDIS_URL"].to_s.strip
        if url.empty?
          Base.log(3, "-rp needs a Redis URL (-r); ignored") if values.key?(:redis_ping)
          return
        end
        ping = values[:redis_ping] || 0
        raise Error, "-rp must be 0..255 seconds, got #{ping}" unless (0..255).cover?(ping)

        Iodine::PubSub.default = Iodine::PubSub::Redis.new(url, ping: ping)
      rescue ArgumentError, TypeError => e
        raise Error, "-r: #{e.message}"
      end

      # The integer in environment variable `name`, nil when unset or empty; `strict` makes
      # anything else an error (the CLI), otherwise it is ignored (the Rack handler).
      def env_int(name, strict: false)
        value = ENV[name].to_s.strip
        return value.to_i if value.match?(/\A[+-]?\d+\z/)
        raise Error, "$#{name} must be a number, got #{ENV.fetch(name).inspect}" if strict && !value.empty?

        nil
      end

      # The help text.
      def help
        lines = FLAGS.map do |names, type, _, text|
          arg = { int: " N", string: " VALUE", bool: "" }[type]
          format("  %-34s %s", names.join(", ") + arg, text)
        end
        <<~HELP
          Iodine #{Iodine::VERSION} - a fast, concurrent web server for real-time Ruby apps (Rust edition).

          Usage: iodine [options] [app.ru]

          Serves the Rack app in the given file, or ./config.ru.
          Flags accept `-flag value`, `-flag=value`, `-flagvalue` and `--flag value`.

          #{lines.join("\n")}
            -?, -h, -help, --help              Show this help.
            --version                          Show the version.

          Environment: PORT, THREADS, WEB_CONCURRENCY / WORKERS, IODINE_REDIS_URL, SCRIPT_NAME.
        HELP
      end
    end
  end
end
