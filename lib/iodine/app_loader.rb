# frozen_string_literal: true

module Iodine
  module Base
    # Finds and loads the app for the `iodine` command: a `.ru` file through Rack::Builder,
    # or a Ruby file whose camel-cased basename names the app constant.
    module AppLoader
      module_function

      # The app in `filename` (tried as given, then with `.ru`), else ./config.ru. Exits with
      # a message when there is none (or serves only static files with -www).
      def load(filename)
        path = find(filename)
        return from_file(path) if path
        return static_only if Iodine::DEFAULT_SETTINGS[:public]

        warn(filename ? "Error: couldn't find the app file #{filename.inspect} (nor config.ru)." : "Error: no app given and no config.ru in #{Dir.pwd}.")
        warn "Usage: iodine [options] [app.ru]   (iodine -? for help)"
        exit 1
      end

      def find(filename)
        if filename
          [filename, "#{filename}.ru"].each { |f| return f if File.file?(f) }
          Base.log(3, "#{filename.inspect} not found, trying config.ru") if File.file?("config.ru")
        end
        "config.ru" if File.file?("config.ru")
      end

      def from_file(path)
        return from_rackup(path) if path.end_with?(".ru")

        require File.expand_path(path)
        name = File.basename(path, ".*").split(/[_-]/).map(&:capitalize).join
        Object.const_get(name)
      end

      def from_rackup(path)
        require "rack"
        result = ::Rack::Builder.parse_file(path)
        result.is_a?(Array) ? result.first : result
      rescue LoadError => e
        raise unless e.path == "rack"

        warn "Error: the rack gem is needed to load #{path} (apt-get install ruby-rack or gem install rack)."
        exit 1
      end

      def static_only
        Listen.not_found_app(Iodine::DEFAULT_SETTINGS[:public])
      end
    end
  end
end
