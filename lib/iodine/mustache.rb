# frozen_string_literal: true

module Iodine
  # Mustache templates, compiled once by the Rust engine and rendered many times:
  #
  #   view = Iodine::Mustache.new("views/index.mustache")   # partials relative to its folder
  #   view.render(title: "Hi", items: [{ name: "<b>" }])     # => String
  #   Iodine::Mustache.render(template: "{{x}}", data: { x: 1 })
  #
  # Data lookup: Hash Symbol keys, then String keys, then public zero-argument methods.
  # Escaping is the spec's (& < > " '). A missing partial renders empty; a syntax error raises
  # RuntimeError naming the line; a missing template file raises LoadError.
  class Mustache
    class << self
      # new(filename, template = nil) or new(filename:, template:)
      def new(*args, filename: nil, template: nil)
        raise ArgumentError, "wrong number of arguments (given #{args.size}, expected 1..2)" if args.size > 2
        raise ArgumentError, "wrong number of arguments (given 0, expected 1..2)" if args.empty? && filename.nil? && template.nil?

        filename = args[0] if args.size >= 1
        template = args[1] if args.size == 2
        [filename, template].each do |v|
          raise TypeError, "filename and template must be Strings" unless v.nil? || v.is_a?(String)
        end
        __load(filename, template)
      end

      # render(filename, data, template = nil) or render(filename:, data:, template:):
      # parse and render once, without keeping the compiled template.
      def render(*args, filename: nil, data: nil, template: nil)
        raise ArgumentError, "wrong number of arguments (given #{args.size}, expected 0..3)" if args.size > 3

        filename = args[0] if args.size >= 1
        data = args[1] if args.size >= 2
        template = args[2] if args.size == 3
        new(filename: filename, template: template).render(data)
      end
    end
  end
end
